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
    }

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

        long past = 0;
        if (cache is not null)
        {
            past = cache.LengthOf(_layer);
            (k, v) = cache.Append(_layer, k, v);
        }

        int groups = _heads / _kvHeads;
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }

        Tensor attended;
        if (past == 0)
        {
            attended = functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        }
        else if (time == 1)
        {
            // One new query sees every cached position and itself: no mask.
            attended = functional.scaled_dot_product_attention(q, k, v);
        }
        else
        {
            // Several new queries after a cache: query i (position past+i) sees keys 0..past+i (bottom-right causal).
            var rows = arange(time, device: x.device).unsqueeze(1) + past;
            var cols = arange(past + time, device: x.device).unsqueeze(0);
            var mask = cols.le(rows);
            attended = functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        }

        var merged = attended.transpose(1, 2).contiguous().view(batch, time, _heads * _headDim);
        return o_proj.call(merged).MoveToOuterDisposeScope();
    }
}
