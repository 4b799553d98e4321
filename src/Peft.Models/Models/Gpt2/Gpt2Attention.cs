using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Gpt2;

/// <summary>
/// GPT-2 self-attention (<c>attn</c>): the fused query/key/value projection <c>c_attn</c> [n_embd → 3·n_embd] and the
/// output projection <c>c_proj</c>, both with bias, causal, through TorchSharp's fused
/// <c>scaled_dot_product_attention</c>. transformers stores these as <c>Conv1D</c> (weight [in, out]); here they are
/// <c>Linear</c> (weight [out, in]) so LoRA, merging and export work as for any linear layer, and
/// <see cref="Gpt2LMHeadModel.LoadOptions"/> transposes on load and save. <see cref="AdaptableAttribute"/>: both can be
/// adapted by configuration; <see cref="Gpt2Targets"/> holds PEFT's default targets (LoRA on <c>c_attn</c>).
/// </summary>
[Adaptable]
public sealed partial class Gpt2Attention : nn.Module
{
    private readonly int _heads;
    private readonly int _headDim;
    private readonly int _embd;
    private readonly int _layer;
    private readonly double _attnDrop;
    private readonly double _residDrop;
    private readonly bool _scale;

    private Module<Tensor, Tensor> c_attn;
    private Module<Tensor, Tensor> c_proj;

    /// <summary>Creates the attention of layer <paramref name="layer"/>.</summary>
    /// <param name="config">Model sizes.</param>
    /// <param name="layer">Layer index (its slot in a <see cref="KvCache"/>).</param>
    public Gpt2Attention(Gpt2Config config, int layer) : base(nameof(Gpt2Attention))
    {
        ArgumentNullException.ThrowIfNull(config);
        _heads = config.NHead;
        _headDim = config.HeadDim;
        _embd = config.NEmbd;
        _layer = layer;
        _attnDrop = config.AttnPdrop;
        _residDrop = config.ResidPdrop;
        _scale = config.ScaleAttnWeights;
        c_attn = Linear(config.NEmbd, 3 * config.NEmbd);
        c_proj = Linear(config.NEmbd, config.NEmbd);
        InitializePeft();
        Insertions = new AttentionInsertions(this, new AttentionGeometry(layer, _heads, _heads, _headDim, config.NEmbd)) { OutputProjection = () => c_proj };
    }

    /// <summary>The points inside this attention: a key/value prefix after the cache, and the heads before <c>c_proj</c>.</summary>
    public AttentionInsertions Insertions { get; }

    /// <summary>
    /// Attends from <paramref name="x"/> [batch, time, n_embd] to itself and, with a cache, to the cached positions
    /// (which it then extends).
    /// </summary>
    /// <param name="x">Normalised hidden states (<c>ln_1</c>'s output).</param>
    /// <param name="cache">Keys/values of earlier positions, or null for a full forward.</param>
    public Tensor Forward(Tensor x, KvCache? cache)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1];
        var qkv = c_attn.call(x).split(_embd, 2);   // transformers: query, key, value = c_attn(x).split(n_embd, dim=2)
        var q = qkv[0].view(batch, time, _heads, _headDim).transpose(1, 2);
        var k = qkv[1].view(batch, time, _heads, _headDim).transpose(1, 2);
        var v = qkv[2].view(batch, time, _heads, _headDim).transpose(1, 2);
        var queries = q;
        if (!_scale)
        {
            // The fused kernel divides by sqrt(headDim); scale_attn_weights=false means no division.
            q = q * Math.Sqrt(_headDim);
        }

        if (cache is not null)
        {
            (k, v) = cache.Append(_layer, k, v);
        }

        (k, v) = Insertions.PrependPrefix(k, v);
        var attended = Insertions.AdjustHeads(CausalAttention.Attend(q, k, v, training ? _attnDrop : 0.0), queries, ProjectKeysValues);
        var merged = attended.transpose(1, 2).contiguous().view(batch, time, _embd);
        var output = functional.dropout(c_proj.call(merged), _residDrop, training);
        return output.MoveToOuterDisposeScope();
    }

    private (Tensor Keys, Tensor Values) ProjectKeysValues(Tensor hidden)
    {
        long batch = hidden.shape[0], time = hidden.shape[1];
        var qkv = c_attn.call(hidden).split(_embd, 2);
        return (qkv[1].view(batch, time, _heads, _headDim).transpose(1, 2), qkv[2].view(batch, time, _heads, _headDim).transpose(1, 2));
    }
}
