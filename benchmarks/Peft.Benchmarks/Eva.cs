using Peft;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// EVA's one-time data step (section 7, <c>--init-only</c>): <c>InitializeEva</c> on <see cref="AdaptableStack"/>'s four
/// Linear(1024, 1024) layers with LoRA r = 8 (so 16 components per layer at rho 2), over four calibration batches of 256 rows
/// whose features have a decaying spectrum (feature i scaled by 1/√(i+1)), cycled until the components converge (tau 0.99).
/// Timed against creating the same stack with plain LoRA, which each EVA run also does; training then runs as LoRA.
/// </summary>
internal static class EvaProbe
{
    public const string Name = "EVA r=8 (4 layers, 4 batches x 256 rows)";
    public const string Baseline = "stack + LoRA r=8 created, no EVA";

    private static readonly List<Tensor> s_batches = CreateBatches();

    /// <summary>Forward passes the last EVA run took.</summary>
    public static int LastPasses { get; private set; }

    public static (string Name, Action Run)[] Variants() => new (string, Action)[]
    {
        (Baseline, () =>
        {
            using var model = new AdaptableStack();
            model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 8, Alpha: 16)));
        }),
        (Name, () =>
        {
            using var model = new AdaptableStack();
            model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.EVA)));
            LastPasses = model.InitializeEva(s_batches, (batch, _) => model.call(batch).Dispose()).ForwardPasses;
        }),
    };

    private static List<Tensor> CreateBatches()
    {
        var generator = new Generator(11);
        using var scale = arange(1, LoRAStack.Hidden + 1, dtype: ScalarType.Float32).rsqrt();
        return Enumerable.Range(0, 4).Select(_ =>
        {
            using var noise = randn(new long[] { 256, LoRAStack.Hidden }, generator: generator);
            return noise * scale;
        }).ToList();
    }
}
