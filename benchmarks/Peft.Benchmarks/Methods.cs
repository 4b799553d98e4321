using Peft;

namespace Peft.Benchmarks;

/// <summary>
/// The methods the benchmark compares, one line each: a method joins with its options and the layers it adapts here. Each
/// is applied to <see cref="AdaptableStack"/> (its four linear layers, or its four norms); its training step is reported
/// against LoRA r=8's and against the frozen base's, in the same run. Layer freezing (Telly, <c>--method freeze-bottom</c>) is
/// not an adapter option and needs a transformer stack (<see cref="ITransformerStack"/>), which this four-layer stack is not:
/// it is measured in section 7 on <see cref="FreezableStack"/> (Freezing.cs). Bottleneck adapters are inserted after a
/// block's sub-layers, not on a layer: section 8 measures them against LoRA on <see cref="InsertionStack"/> (Bottleneck.cs).
/// </summary>
internal static class BenchmarkedMethods
{
    public static readonly (string Name, PeftAdapterOptions Options, TargetModules Targets)[] All =
    {
        ("LoRA r=8", new LoRAOptions(Rank: 8, Alpha: 16), TargetModules.AllLinear),
        ("LoKr r=8", new KroneckerOptions(Rank: 8, Alpha: 8), TargetModules.AllLinear),
        ("DiffuseKronA", new KroneckerOptions(Rank: 8, Alpha: 8, FullFactors: true), TargetModules.AllLinear),
        ("DoRA r=8", new DoRAOptions(Rank: 8, Alpha: 16), TargetModules.AllLinear),
        ("IA3", new IA3Options(), TargetModules.AllLinear),
        ("LN tuning", new LNTuningOptions(), AdaptableStack.Norms),
        ("LoHa r=8", new LoHaOptions(Rank: 8, Alpha: 8), TargetModules.AllLinear),
        ("HiRA r=32", new HiRAOptions(Rank: 32), TargetModules.AllLinear),
        ("VeRA r=256", new VeRAOptions(Rank: 256), TargetModules.AllLinear),
        ("BitFit (linear biases)", new BitFitOptions(), TargetModules.AllLinear),
        ("SSF (linear outputs)", new SSFOptions(), TargetModules.AllLinear),
    };

    /// <summary>QLoRA: the first line's LoRA over a base whose four frozen weights are stored quantized (dequantized in each
    /// forward and again in the backward).</summary>
    public static readonly (string Name, QuantizationFormat Format)[] QuantizedBases =
    {
        ("QLoRA NF4 r=8", QuantizationFormat.NF4),
        ("QLoRA int8 r=8", QuantizationFormat.Int8),
    };
}
