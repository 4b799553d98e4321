using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Conformance.Tests;

/// <summary>
/// The small model every conformance row adapts by configuration: an embedding, a LayerNorm, and a feed-forward pair with a
/// bias (fc1 8 → 12, fc2 12 → 8). Built from a fixed seed, so two instances hold the same base weights.
/// </summary>
[Adaptable]
public sealed partial class TinyModel : nn.Module<Tensor, Tensor>
{
    /// <summary>Vocabulary size.</summary>
    public const int Vocabulary = 20;

    private Module<Tensor, Tensor> embed;
    private Module<Tensor, Tensor> norm;
    private Module<Tensor, Tensor> fc1;
    private Module<Tensor, Tensor> fc2;

    /// <summary>Builds the model from the seed.</summary>
    /// <param name="seed">The seed of the base weights.</param>
    public TinyModel(int seed = 7) : base(nameof(TinyModel))
    {
        torch.manual_seed(seed);
        embed = Embedding(Vocabulary, 8);
        norm = LayerNorm(8);
        fc1 = Linear(8, 12);
        fc2 = Linear(12, 8);
        using (torch.no_grad())
        {
            // Non-trivial norm parameters, so norm-tuning rows see a real base.
            foreach (var (_, p) in norm.named_parameters()) p.add_(torch.randn(p.shape) * 0.1);
        }

        InitializePeft();
    }

    /// <summary>Token ids <c>[B, T]</c> → <c>[B, T', 8]</c> (T' = T plus any prompt).</summary>
    /// <param name="ids">Token ids.</param>
    /// <returns>The output.</returns>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var x = norm.call(embed.call(ids));
        var h = nn.functional.relu(fc1.call(x));
        return fc2.call(h).MoveToOuterDisposeScope();
    }
}
