using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Gpt2;

/// <summary>
/// One pre-norm GPT-2 block (<c>transformer.h.N</c>): <c>h = x + attn(ln_1(x))</c>, then <c>h + mlp(ln_2(h))</c>.
/// </summary>
public sealed class Gpt2Block : nn.Module
{
    private readonly LayerNorm ln_1;
    private readonly Gpt2Attention attn;
    private readonly LayerNorm ln_2;
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
        register_module(nameof(ln_1), ln_1);
        register_module(nameof(attn), attn);
        register_module(nameof(ln_2), ln_2);
        register_module(nameof(mlp), mlp);
    }

    /// <summary>Runs the block on hidden states [batch, time, n_embd].</summary>
    /// <param name="x">Hidden states.</param>
    /// <param name="cache">Key/value cache, or null.</param>
    public Tensor Forward(Tensor x, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = x + attn.Forward(ln_1.call(x), cache);
        return (h + mlp.call(ln_2.call(h))).MoveToOuterDisposeScope();
    }
}
