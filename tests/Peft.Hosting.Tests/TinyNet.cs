using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Hosting.Tests;

/// <summary>
/// A small regression model with a LoRA adapter whose dropout draws from the global generator (so a resume must
/// restore it) and a fully trainable head.
/// </summary>
public sealed partial class TinyNet : Module<Tensor, Tensor>
{
    public const int In = 8;

    [LoRA(rank: 2, alpha: 4, dropout: 0.1)] private Module<Tensor, Tensor> fc1 = Linear(In, 16);
    [Trainable] private Module<Tensor, Tensor> head = Linear(16, 1);

    public TinyNet() : base(nameof(TinyNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc1.call(x))).MoveToOuterDisposeScope();
    }

    /// <summary>A batch drawn from <paramref name="sampler"/>: y = sum of the first 3 features, plus noise.</summary>
    public static (Tensor X, Tensor Y) Batch(Generator sampler, int size = 16)
    {
        var x = randn(new long[] { size, In }, generator: sampler);
        var y = x.narrow(1, 0, 3).sum(1, keepdim: true) + (0.01 * randn(new long[] { size, 1 }, generator: sampler));
        return (x, y);
    }
}
