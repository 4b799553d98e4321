using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Gpt2;

/// <summary>
/// One pre-norm GPT-2 block (<c>transformer.h.N</c>): <c>h = x + attn(ln_1(x))</c>, then <c>h + mlp(ln_2(h))</c>.
/// <see cref="AdaptableAttribute"/>: <c>ln_1</c> and <c>ln_2</c> can be adapted by configuration (LayerNorm tuning,
/// <see cref="Gpt2Targets.LayerNormTuning"/>).
/// </summary>
[Adaptable]
public sealed partial class Gpt2Block : nn.Module, ITransformerBlock
{
    private Module<Tensor, Tensor> ln_1;
    private readonly Gpt2Attention attn;
    private Module<Tensor, Tensor> ln_2;
    private readonly Gpt2Mlp mlp;

    /// <summary>Creates block <paramref name="layer"/>.</summary>
    /// <param name="config">Model sizes.</param>
    /// <param name="layer">Layer index.</param>
    public Gpt2Block(Gpt2Config config, int layer) : base(nameof(Gpt2Block))
    {
        ArgumentNullException.ThrowIfNull(config);
        ln_1 = LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        attn = new Gpt2Attention(config, layer);
        ln_2 = LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        mlp = new Gpt2Mlp(config);
        InitializePeft();
        Insertions = new BlockInsertions(this, config.NEmbd, config.NEmbd, config.NEmbd, config.NEmbd) { Attention = attn.Insertions };
    }

    /// <summary>After <c>attn</c> and after <c>mlp</c>, before each residual add (the sub-layer's input is the residual
    /// stream before its norm).</summary>
    public BlockInsertions Insertions { get; }

    /// <summary>Runs the block on hidden states [batch, time, n_embd].</summary>
    /// <param name="x">Hidden states.</param>
    /// <param name="cache">Key/value cache, or null.</param>
    public Tensor Forward(Tensor x, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = x + Insertions.AfterAttention(x, attn.Forward(ln_1.call(x), cache));
        return (h + Insertions.AfterFeedForward(h, mlp.call(ln_2.call(h)))).MoveToOuterDisposeScope();
    }
}
