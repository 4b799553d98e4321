using Peft;

namespace Peft.Benchmarks;

/// <summary>
/// The methods the benchmark compares, one line each: a method joins with its options and the layers it adapts here. Each
/// is applied to <see cref="AdaptableStack"/> (its four linear layers, or its four norms); its training step is reported
/// against LoRA r=8's and against the frozen base's, in the same run.
/// </summary>
internal static class BenchmarkedMethods
{
    public static readonly (string Name, PeftAdapterOptions Options, TargetModules Targets)[] All =
    {
        ("LoRA r=8", new LoRAOptions(Rank: 8, Alpha: 16), TargetModules.AllLinear),
        ("LoKr r=8", new KroneckerOptions(Rank: 8, Alpha: 8), TargetModules.AllLinear),
        ("DoRA r=8", new DoRAOptions(Rank: 8, Alpha: 16), TargetModules.AllLinear),
        ("IA3", new IA3Options(), TargetModules.AllLinear),
        ("LN tuning", new LNTuningOptions(), AdaptableStack.Norms),
        ("LoHa r=8", new LoHaOptions(Rank: 8, Alpha: 8), TargetModules.AllLinear),
        ("HiRA r=32", new HiRAOptions(Rank: 32), TargetModules.AllLinear),
        ("VeRA r=256", new VeRAOptions(Rank: 256), TargetModules.AllLinear),
        ("RandLoRA r=32", new RandLoRAOptions(Rank: 32), TargetModules.AllLinear),
        ("VB-LoRA r=4", new VBLoRAOptions(Rank: 4), TargetModules.AllLinear),
    };
}
