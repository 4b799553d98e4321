using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Conformance.Tests;

/// <summary>
/// The small transformer-shaped model the inserted-adapter rows use: an embedding (20 × 8) and two blocks
/// <c>h = x + attn(norm1(x))</c>, <c>y = h + fc2(gelu(fc1(norm2(h))))</c> (attn: 2 heads of width 4 with q/k/v/o 8 → 8,
/// fc1 8 → 16, fc2 16 → 8), each sub-layer's output passed through the block's insertion points before its residual add,
/// and each attention offering the points inside it (a key/value prefix, the heads before the output projection). The
/// blocks run through <see cref="StackRunners.RunBlocks"/>, so a stack runner (MEFT) can take them over. Built from a fixed
/// seed.
/// </summary>
public sealed class TinyStack : nn.Module<Tensor, Tensor>, ITransformerStack
{
    /// <summary>The hidden width.</summary>
    public const int Width = 8;

    /// <summary>The attention heads (of width <see cref="Width"/> / <see cref="Heads"/>).</summary>
    public const int Heads = 2;

    private readonly Embedding embed;
    private readonly ModuleList<TinyBlock> blocks;

    /// <summary>Builds the model from the seed.</summary>
    /// <param name="seed">The seed of the base weights.</param>
    public TinyStack(int seed = 7) : base(nameof(TinyStack))
    {
        torch.manual_seed(seed);
        embed = Embedding(TinyModel.Vocabulary, Width);
        blocks = new ModuleList<TinyBlock>(new TinyBlock(0), new TinyBlock(1));
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
        return this.RunBlocks(x, this.GradientFreeBlocks(), (i, h) => blocks[i].call(h)).MoveToOuterDisposeScope();
    }
}

/// <summary>One pre-norm block of <see cref="TinyStack"/> with both sub-layer insertion points and its attention's.</summary>
public sealed class TinyBlock : nn.Module<Tensor, Tensor>, ITransformerBlock
{
    private readonly LayerNorm norm1 = LayerNorm(TinyStack.Width);
    private readonly TinyAttention attn;
    private readonly LayerNorm norm2 = LayerNorm(TinyStack.Width);
    private readonly Linear fc1 = Linear(TinyStack.Width, 2 * TinyStack.Width);
    private readonly Linear fc2 = Linear(2 * TinyStack.Width, TinyStack.Width);

    /// <summary>Creates block <paramref name="layer"/>.</summary>
    /// <param name="layer">The block's index.</param>
    public TinyBlock(int layer) : base(nameof(TinyBlock))
    {
        attn = new TinyAttention(layer);
        RegisterComponents();
        Insertions = new BlockInsertions(this, TinyStack.Width, TinyStack.Width, TinyStack.Width, TinyStack.Width) { Attention = attn.Insertions };
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

/// <summary>Bidirectional multi-head attention of <see cref="TinyStack"/> with its insertion points: keys and values pass
/// through <see cref="AttentionInsertions.PrependPrefix"/> (every query sees the prefix), the attended heads through
/// <see cref="AttentionInsertions.AdjustHeads"/> before <c>o</c>, its output projection (<see cref="AttentionInsertions.OutputProjection"/>).</summary>
public sealed class TinyAttention : nn.Module<Tensor, Tensor>
{
    private const int HeadDim = TinyStack.Width / TinyStack.Heads;

    private readonly Linear q = Linear(TinyStack.Width, TinyStack.Width);
    private readonly Linear k = Linear(TinyStack.Width, TinyStack.Width);
    private readonly Linear v = Linear(TinyStack.Width, TinyStack.Width);
    private readonly Linear o = Linear(TinyStack.Width, TinyStack.Width);

    /// <summary>Creates the attention of block <paramref name="layer"/>.</summary>
    /// <param name="layer">The block's index.</param>
    public TinyAttention(int layer) : base(nameof(TinyAttention))
    {
        RegisterComponents();
        Insertions = new AttentionInsertions(this, new AttentionGeometry(layer, TinyStack.Heads, TinyStack.Heads, HeadDim, TinyStack.Width)) { OutputProjection = () => o };
    }

    /// <summary>The points inside this attention.</summary>
    public AttentionInsertions Insertions { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1];
        var queries = Heads(q.call(x));
        var (keys, values) = Insertions.PrependPrefix(Heads(k.call(x)), Heads(v.call(x)));
        var attended = Insertions.AdjustHeads(functional.scaled_dot_product_attention(queries, keys, values), queries, h => (Heads(k.call(h)), Heads(v.call(h))));
        return o.call(attended.transpose(1, 2).contiguous().view(batch, time, TinyStack.Width)).MoveToOuterDisposeScope();
    }

    private static Tensor Heads(Tensor t) => t.view(t.shape[0], t.shape[1], TinyStack.Heads, HeadDim).transpose(1, 2);
}
