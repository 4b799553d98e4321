using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models;

/// <summary>Causal scaled-dot-product attention when keys may precede the queries (a KV cache, a prefix from
/// <see cref="AttentionInsertions"/>): the decoders' one copy of the bottom-right causal rule.</summary>
internal static class CausalAttention
{
    /// <summary>Attends each query to every key before the queries and to the queries' own positions up to itself.</summary>
    /// <param name="q">Queries [batch, heads, time, headDim].</param>
    /// <param name="k">Keys [batch, heads, before + time, headDim].</param>
    /// <param name="v">Values, same shape as the keys.</param>
    /// <param name="dropout">Attention dropout probability (0 outside training).</param>
    /// <returns>[batch, heads, time, headDim].</returns>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, double dropout)
    {
        long time = q.shape[2];
        long before = k.shape[2] - time;
        if (before == 0)
        {
            return functional.scaled_dot_product_attention(q, k, v, p: dropout, is_casual: true);
        }

        if (time == 1)
        {
            // One new query sees every earlier key and itself: no mask.
            return functional.scaled_dot_product_attention(q, k, v, p: dropout);
        }

        // Query i (key position before+i) sees keys 0..before+i (bottom-right causal).
        var rows = arange(time, device: q.device).unsqueeze(1) + before;
        var cols = arange(before + time, device: q.device).unsqueeze(0);
        return functional.scaled_dot_product_attention(q, k, v, attn_mask: cols.le(rows), p: dropout);
    }
}
