using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Conformance.Tests;

/// <summary>
/// <see cref="TinyStack"/> with real attention, for the inserted rows that act inside it (LoFiT): an embedding (20 × 8) and
/// two blocks <c>h = x + attn(norm1(x))</c>, <c>y = h + fc2(gelu(fc1(norm2(h))))</c>, where <c>attn</c> is two-head bidirectional
/// self-attention (head width 4; <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>, all with bias) offering the
/// attention insertion points: a prefix on keys and values, the heads through <c>AdjustHeads</c> before <c>o_proj</c>, and
/// <c>o_proj</c> as the output projection. Built from a fixed seed.
/// </summary>
public sealed class TinyAttentionStack : nn.Module<Tensor, Tensor>, ITransformerStack
{
    private readonly Embedding embed;
    private readonly ModuleList<TinyAttentionBlock> blocks;

    /// <summary>Builds the model from the seed.</summary>
    /// <param name="seed">The seed of the base weights.</param>
    public TinyAttentionStack(int seed = 7) : base(nameof(TinyAttentionStack))
    {
        torch.manual_seed(seed);
        embed = Embedding(TinyModel.Vocabulary, TinyStack.Width);
        blocks = new ModuleList<TinyAttentionBlock>(new TinyAttentionBlock(0), new TinyAttentionBlock(1));
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

/// <summary>One pre-norm block of <see cref="TinyAttentionStack"/>.</summary>
public sealed class TinyAttentionBlock : nn.Module<Tensor, Tensor>, ITransformerBlock
{
    private readonly LayerNorm norm1 = LayerNorm(TinyStack.Width);
    private readonly TinyAttention attn;
    private readonly LayerNorm norm2 = LayerNorm(TinyStack.Width);
    private readonly Linear fc1 = Linear(TinyStack.Width, 2 * TinyStack.Width);
    private readonly Linear fc2 = Linear(2 * TinyStack.Width, TinyStack.Width);

    /// <summary>Creates block <paramref name="layer"/>.</summary>
    /// <param name="layer">Its index.</param>
    public TinyAttentionBlock(int layer) : base(nameof(TinyAttentionBlock))
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

/// <summary>Two-head bidirectional self-attention with the insertion points.</summary>
public sealed class TinyAttention : nn.Module<Tensor, Tensor>
{
    private const int Heads = 2;
    private const int HeadDim = TinyStack.Width / Heads;
    private readonly Linear q_proj = Linear(TinyStack.Width, TinyStack.Width);
    private readonly Linear k_proj = Linear(TinyStack.Width, TinyStack.Width);
    private readonly Linear v_proj = Linear(TinyStack.Width, TinyStack.Width);
    private readonly Linear o_proj = Linear(TinyStack.Width, TinyStack.Width);

    /// <summary>Creates the attention of block <paramref name="layer"/>.</summary>
    /// <param name="layer">The block's index.</param>
    public TinyAttention(int layer) : base(nameof(TinyAttention))
    {
        RegisterComponents();
        Insertions = new AttentionInsertions(this, new AttentionGeometry(layer, Heads, Heads, HeadDim, TinyStack.Width)) { OutputProjection = () => o_proj };
    }

    /// <summary>The points inside the attention.</summary>
    public AttentionInsertions Insertions { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1];
        Tensor Split(Tensor t) => t.view(batch, -1, Heads, HeadDim).transpose(1, 2);
        var q = Split(q_proj.call(x));
        var (k, v) = Insertions.PrependPrefix(Split(k_proj.call(x)), Split(v_proj.call(x)));
        var heads = Insertions.AdjustHeads(functional.scaled_dot_product_attention(q, k, v), q, h => (Split(k_proj.call(h)), Split(v_proj.call(h))));
        return o_proj.call(heads.transpose(1, 2).reshape(batch, time, TinyStack.Width)).MoveToOuterDisposeScope();
    }
}
