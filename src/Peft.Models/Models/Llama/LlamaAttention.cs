using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>
/// Llama self-attention (<c>self_attn</c>): <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c> (biases as the config says:
/// none for Llama and Mistral, on q/k/v for Qwen2),
/// rotary embeddings on queries and keys, grouped-query attention (each key/value head serves
/// <c>heads / kvHeads</c> consecutive query heads, as transformers' <c>repeat_kv</c>) through TorchSharp's fused
/// <c>scaled_dot_product_attention</c>, causal. <see cref="AdaptableAttribute"/>: the four projections can be adapted by
/// configuration (<see cref="PeftTargeting.ApplyTargets"/>); <see cref="LlamaTargets"/> holds PEFT's default targets.
/// </summary>
[Adaptable]
public sealed partial class LlamaAttention : nn.Module
{
    private readonly int _heads;
    private readonly int _kvHeads;
    private readonly int _headDim;
    private readonly int _layer;

    private Module<Tensor, Tensor> q_proj;
    private Module<Tensor, Tensor> k_proj;
    private Module<Tensor, Tensor> v_proj;
    private Module<Tensor, Tensor> o_proj;

    /// <summary>Creates the attention of layer <paramref name="layer"/>.</summary>
    /// <param name="config">Model sizes.</param>
    /// <param name="layer">Layer index (its slot in a <see cref="KvCache"/>).</param>
    public LlamaAttention(LlamaConfig config, int layer) : base(nameof(LlamaAttention))
    {
        ArgumentNullException.ThrowIfNull(config);
        _heads = config.NumAttentionHeads;
        _kvHeads = config.KeyValueHeads;
        _headDim = config.HeadDim;
        _layer = layer;
        q_proj = Linear(config.HiddenSize, _heads * _headDim, hasBias: config.QkvBias);
        k_proj = Linear(config.HiddenSize, _kvHeads * _headDim, hasBias: config.QkvBias);
        v_proj = Linear(config.HiddenSize, _kvHeads * _headDim, hasBias: config.QkvBias);
        o_proj = Linear(_heads * _headDim, config.HiddenSize, hasBias: config.OutputBias);
        InitializePeft();
        Insertions = new AttentionInsertions(this, new AttentionGeometry(layer, _heads, _kvHeads, _headDim, config.HiddenSize)) { OutputProjection = () => o_proj };
    }

    /// <summary>The points inside this attention: a key/value prefix after the cache, before grouped-query repetition (not
    /// rotated), and the heads before <c>o_proj</c>.</summary>
    public AttentionInsertions Insertions { get; }

    /// <summary>
    /// Attends from <paramref name="x"/> [batch, time, hidden] to itself and, with a cache, to the cached positions
    /// (which it then extends).
    /// </summary>
    /// <param name="x">Normalised hidden states.</param>
    /// <param name="cos">Rotary cosine table for the new positions [time, headDim].</param>
    /// <param name="sin">Rotary sine table for the new positions.</param>
    /// <param name="cache">Keys/values of earlier positions, or null for a full forward.</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1];
        var q = q_proj.call(x).view(batch, time, _heads, _headDim).transpose(1, 2);
        var k = k_proj.call(x).view(batch, time, _kvHeads, _headDim).transpose(1, 2);
        var v = v_proj.call(x).view(batch, time, _kvHeads, _headDim).transpose(1, 2);
        q = LlamaRotaryEmbedding.Apply(q, cos, sin);
        k = LlamaRotaryEmbedding.Apply(k, cos, sin);

        if (cache is not null)
        {
            (k, v) = cache.Append(_layer, k, v);
        }

        (k, v) = Insertions.PrependPrefix(k, v);
        int groups = _heads / _kvHeads;
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }

        var attended = Insertions.AdjustHeads(CausalAttention.Attend(q, k, v, 0.0), q, ProjectKeysValues);
        var merged = attended.transpose(1, 2).contiguous().view(batch, time, _heads * _headDim);
        return o_proj.call(merged).MoveToOuterDisposeScope();
    }

    private (Tensor Keys, Tensor Values) ProjectKeysValues(Tensor hidden)
    {
        long batch = hidden.shape[0], time = hidden.shape[1];
        return (k_proj.call(hidden).view(batch, time, _kvHeads, _headDim).transpose(1, 2),
                v_proj.call(hidden).view(batch, time, _kvHeads, _headDim).transpose(1, 2));
    }
}
