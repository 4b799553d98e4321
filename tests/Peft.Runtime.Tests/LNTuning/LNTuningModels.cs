using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.LNTuning;

/// <summary>A declared LN-tuning adapter on a LayerNorm(3), followed by a linear head.</summary>
internal sealed partial class DeclaredNormModel : Module<Tensor, Tensor>
{
    [LNTuning] private Module<Tensor, Tensor> norm = LayerNorm(3);
    private Module<Tensor, Tensor> head = Linear(3, 2);

    public DeclaredNormModel() : base(nameof(DeclaredNormModel)) => InitializePeft();

    public AdaptedNorm Norm => (AdaptedNorm)norm;

    public override Tensor forward(Tensor x) => head.call(norm.call(x));
}

/// <summary>A targetable model with a LayerNorm with a bias, one without, and an RMSNorm of user code.</summary>
[Adaptable]
internal sealed partial class TargetNormModel : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> ln = LayerNorm(4);
    private Module<Tensor, Tensor> ln_nobias = LayerNorm(4, bias: false);
    private Module<Tensor, Tensor> rms = new TestRmsNorm(4);
    private Module<Tensor, Tensor> proj = Linear(4, 4);

    public TargetNormModel(long seed = 7) : base(nameof(TargetNormModel))
    {
        InitializePeft();
        using (no_grad())
        {
            // Every parameter from the seed (the same model each time), the norms' away from their ones/zeros init, so a
            // copy that is not taken from the base would show.
            var generator = new TorchSharp.torch.Generator((ulong)seed);
            foreach (var (_, p) in named_parameters()) p.copy_(randn(p.shape, generator: generator) * 0.3 + 1);
        }
    }

    public override Tensor forward(Tensor x) => proj.call(rms.call(ln_nobias.call(ln.call(x))));
}

/// <summary>Llama-style RMSNorm, <c>y = x / sqrt(mean(x²) + eps) · w</c>, implementing <see cref="IAdaptableNorm"/>.</summary>
internal sealed class TestRmsNorm : Module<Tensor, Tensor>, IAdaptableNorm
{
    private readonly TorchSharp.Modules.Parameter weight;

    public TestRmsNorm(long size) : base(nameof(TestRmsNorm))
    {
        weight = Parameter(ones(size));
        RegisterComponents();
    }

    public TorchSharp.Modules.Parameter Weight => weight;

    public TorchSharp.Modules.Parameter? Bias => null;

    public Tensor Normalize(Tensor input, Tensor w, Tensor? bias)
    {
        using var scope = NewDisposeScope();
        var rms = input.pow(2).mean(new long[] { -1 }, keepdim: true).add(1e-6).rsqrt();
        return (input * rms * w).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor input) => Normalize(input, weight, null);
}
