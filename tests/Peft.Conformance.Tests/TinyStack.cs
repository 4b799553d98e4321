using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Conformance.Tests;

/// <summary>
/// The small transformer-shaped model the inserted-adapter rows use: an embedding (20 × 8) and two blocks
/// <c>h = x + attn(norm1(x))</c>, <c>y = h + fc2(gelu(fc1(norm2(h))))</c> (attn 8 → 8, fc1 8 → 16, fc2 16 → 8), each
/// sub-layer's output passed through the block's insertion points before its residual add. Built from a fixed seed.
/// </summary>
public sealed class TinyStack : nn.Module<Tensor, Tensor>, ITransformerStack
{
    /// <summary>The hidden width.</summary>
    public const int Width = 8;

    private readonly Embedding embed;
    private readonly ModuleList<TinyBlock> blocks;

    /// <summary>Builds the model from the seed.</summary>
    /// <param name="seed">The seed of the base weights.</param>
    public TinyStack(int seed = 7) : base(nameof(TinyStack))
    {
        torch.manual_seed(seed);
        embed = Embedding(TinyModel.Vocabulary, Width);
        blocks = new ModuleList<TinyBlock>(new TinyBlock(), new TinyBlock());
        RegisterComponents();
    }

    /// <inheritdoc />
    public IReadOnlyList<nn.Module> EmbeddingModules => [embed];

    /// <inheritdoc />
    public IReadOnlyList<nn.Module> Blocks => blocks.Cast<nn.Module>().ToArray();

    /// <inheritdoc />
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var x = embed.call(ids);
        foreach (var block in blocks) x = block.call(x);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>One pre-norm block of <see cref="TinyStack"/> with both insertion points.</summary>
public sealed class TinyBlock : nn.Module<Tensor, Tensor>, ITransformerBlock
{
    private readonly LayerNorm norm1 = LayerNorm(TinyStack.Width);
    private readonly Linear attn = Linear(TinyStack.Width, TinyStack.Width);
    private readonly LayerNorm norm2 = LayerNorm(TinyStack.Width);
    private readonly Linear fc1 = Linear(TinyStack.Width, 2 * TinyStack.Width);
    private readonly Linear fc2 = Linear(2 * TinyStack.Width, TinyStack.Width);

    /// <summary>Creates the block.</summary>
    public TinyBlock() : base(nameof(TinyBlock))
    {
        RegisterComponents();
        Insertions = new BlockInsertions(this, TinyStack.Width, TinyStack.Width, TinyStack.Width, TinyStack.Width);
    }

    /// <inheritdoc />
    public BlockInsertions Insertions { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + Insertions.AfterAttention(x, attn.call(norm1.call(x)));
        return (h + Insertions.AfterFeedForward(h, fc2.call(functional.gelu(fc1.call(norm2.call(h)))))).MoveToOuterDisposeScope();
    }
}
