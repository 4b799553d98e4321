using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.Eva;

/// <summary>One EVA layer (r = 1, alpha 2) over 3 input features.</summary>
public sealed partial class EvaOne : Module<Tensor, Tensor>
{
    [LoRA(rank: 1, alpha: 2, Init = LoRAInit.EVA)] private Module<Tensor, Tensor> fc = Linear(3, 2);

    public EvaOne() : base(nameof(EvaOne)) => InitializePeft();

    public override Tensor forward(Tensor x) => fc.call(x);
}

/// <summary>Two EVA layers (r = 2, alpha 4) over 4 input features each, fed separately by the calibration callback.</summary>
public sealed partial class EvaTwo : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.EVA)] private Module<Tensor, Tensor> p = Linear(4, 3);
    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.EVA)] private Module<Tensor, Tensor> q = Linear(4, 3);

    public EvaTwo() : base(nameof(EvaTwo)) => InitializePeft();

    /// <summary>Runs p on <paramref name="xp"/> and q on <paramref name="xq"/>.</summary>
    public void Feed(Tensor xp, Tensor xq)
    {
        p.call(xp).Dispose();
        q.call(xq).Dispose();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = p.call(x);
        return h + q.call(x);
    }
}

/// <summary>Two EVA layers (r = 1, alpha 2) over 3 input features each.</summary>
public sealed partial class EvaPair : Module<Tensor, Tensor>
{
    [LoRA(rank: 1, alpha: 2, Init = LoRAInit.EVA)] private Module<Tensor, Tensor> p = Linear(3, 2);
    [LoRA(rank: 1, alpha: 2, Init = LoRAInit.EVA)] private Module<Tensor, Tensor> q = Linear(3, 2);

    public EvaPair() : base(nameof(EvaPair)) => InitializePeft();

    /// <summary>Runs p on <paramref name="xp"/> and q on <paramref name="xq"/>.</summary>
    public void Feed(Tensor xp, Tensor xq)
    {
        p.call(xp).Dispose();
        q.call(xq).Dispose();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = p.call(x);
        return h + q.call(x);
    }
}

/// <summary><see cref="EvaPair"/>'s layers without adapters (what a load that creates the adapters adapts).</summary>
[Adaptable]
public sealed partial class EvaPairBase : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> p = Linear(3, 2);
    private Module<Tensor, Tensor> q = Linear(3, 2);

    public EvaPairBase() : base(nameof(EvaPairBase)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var h = p.call(x);
        return h + q.call(x);
    }
}

/// <summary>Calibration rows with known principal directions (zero mean): ± a_i e_i for each axis i with a_i ≠ 0, so the
/// centred sum of squares along e_i is 2 a_i² and the explained-variance ratios are a_i² / Σ a_j².</summary>
internal static class EvaData
{
    public static Tensor Axes(params double[] amplitudes)
    {
        var rows = new List<float[]>();
        for (int i = 0; i < amplitudes.Length; i++)
        {
            if (amplitudes[i] == 0) continue;
            foreach (var sign in new[] { 1.0, -1.0 })
            {
                var row = new float[amplitudes.Length];
                row[i] = (float)(sign * amplitudes[i]);
                rows.Add(row);
            }
        }

        var data = new float[rows.Count, amplitudes.Length];
        for (int r = 0; r < rows.Count; r++)
            for (int c = 0; c < amplitudes.Length; c++) data[r, c] = rows[r][c];
        return torch.tensor(data);
    }
}
