using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>
/// Two adapted layers with different ranks and alphas (so the saved configs carry rank_pattern/alpha_pattern), a LoRA
/// adapter "default" and a LoKr adapter "kron" on both (fc1's LoKr W2 is factored into lokr_w2_a/_b, fc2's is full),
/// and a plain head.
/// </summary>
public sealed partial class MergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [LoRA(rank: 4, alpha: 8)]
    [Kronecker(rank: 2, alpha: 4, Name = "kron")]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [LoRA(rank: 2, alpha: 3)]
    [Kronecker(rank: 8, alpha: 2, Name = "kron")]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public MergeNet() : base(nameof(MergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }

    /// <summary>Gives every adapter parameter random values (fresh LoRA B and LoKr W1 are zero, which would make merging trivial).</summary>
    public void RandomizeAdapters(long seed)
    {
        using var generator = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var p in this.AdapterParameters())
        {
            using var values = randn(p.shape, generator: generator) * 0.3;
            p.copy_(values);
        }
    }
}

/// <summary>One rsLoRA layer (scaling alpha/√r).</summary>
public sealed partial class RsNet : Module<Tensor, Tensor>
{
    [LoRA(rank: 4, alpha: 6, UseRsLora = true)]
    private Module<Tensor, Tensor> proj = Linear(12, 10);

    public RsNet() : base(nameof(RsNet)) => InitializePeft();

    public override Tensor forward(Tensor x) => proj.call(x);
}
