using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.UseLite;

/// <summary>
/// One pre-norm transformer layer of the Universal Sentence Encoder lite ("KonaTransformer"): layer norm, 4-head
/// self-attention whose padded keys are masked, output projection plus the residual (projected by
/// <c>residual_proj</c> where the layer widens 256 to 512), then layer norm, ReLU feed-forward 512-1536-512 and residual.
/// <see cref="AdaptableAttribute"/>: the projections and both norms can be adapted by configuration
/// (<see cref="UseLiteTargets"/>).
/// </summary>
[Adaptable]
public sealed partial class UseLiteTransformerLayer : Module<Tensor, Tensor, Tensor>, ITransformerBlock
{
    private readonly int _heads;

    private Module<Tensor, Tensor> attention_norm;
    private Module<Tensor, Tensor> q_proj;
    private Module<Tensor, Tensor> k_proj;
    private Module<Tensor, Tensor> v_proj;
    private Module<Tensor, Tensor> out_proj;
    private Module<Tensor, Tensor>? residual_proj;
    private Module<Tensor, Tensor> ffn_norm;
    private Module<Tensor, Tensor> fc1;
    private Module<Tensor, Tensor> fc2;

    /// <summary>Creates layer <paramref name="layer"/> (0 reads 256-wide embeddings, later layers 512-wide states).</summary>
    /// <param name="layer">Zero-based layer index.</param>
    public UseLiteTransformerLayer(int layer) : base($"{nameof(UseLiteTransformerLayer)}{layer}")
    {
        int input = UseLiteConfig.LayerInputDim(layer);
        int hidden = UseLiteConfig.HiddenDim;
        _heads = UseLiteConfig.Heads;
        attention_norm = LayerNorm(input, eps: UseLiteConfig.LayerNormEpsilon);
        q_proj = Linear(input, input);
        k_proj = Linear(input, input);
        v_proj = Linear(input, input);
        out_proj = Linear(input, hidden);
        residual_proj = input != hidden ? Linear(input, hidden) : null;
        ffn_norm = LayerNorm(hidden, eps: UseLiteConfig.LayerNormEpsilon);
        fc1 = Linear(hidden, UseLiteConfig.FeedForwardDim);
        fc2 = Linear(UseLiteConfig.FeedForwardDim, hidden);
        InitializePeft();
        Attention = new AttentionInsertions(this, new AttentionGeometry(layer, _heads, _heads, input / _heads, input)) { OutputProjection = () => out_proj };
        Insertions = new BlockInsertions(this, input, hidden, hidden, hidden) { Attention = Attention };
    }

    /// <summary>The points inside the self-attention: a key/value prefix every token sees, and the heads before
    /// <c>out_proj</c>.</summary>
    public AttentionInsertions Attention { get; }

    /// <summary>After <c>out_proj</c> (before the residual add) and after <c>fc2</c> (before the padding mask and the residual
    /// add); each sub-layer's input is the residual stream before its norm (256 wide into layer 0's attention).</summary>
    public BlockInsertions Insertions { get; }

    /// <summary>Maps states [batch, time, in] and a float mask [batch, time] (1 = token, 0 = padding) to [batch, time, 512].</summary>
    public override Tensor forward(Tensor x, Tensor mask)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1], dim = x.shape[2];
        long headDim = dim / _heads;
        var validColumn = mask.unsqueeze(-1);

        var h = attention_norm.call(x);
        var q = q_proj.call(h).view(batch, time, _heads, headDim).transpose(1, 2);
        var k = k_proj.call(h).view(batch, time, _heads, headDim).transpose(1, 2);
        var v = v_proj.call(h).view(batch, time, _heads, headDim).transpose(1, 2);
        // As the graph: scale the queries, add -1e9 to the logits of padded keys, softmax over keys.
        var keyBias = ((1.0f - mask) * UseLiteConfig.MaskBias).view(batch, 1, 1, time);
        long prefix = Attention.PrefixLength;
        if (prefix > 0)
        {
            (k, v) = Attention.PrependPrefix(k, v);
            keyBias = cat([zeros(batch, 1, 1, prefix, dtype: keyBias.dtype, device: keyBias.device), keyBias], 3);   // every token sees the prefix
        }

        var logits = (q * (1.0 / Math.Sqrt(headDim))).matmul(k.transpose(2, 3));
        var weights = functional.softmax(logits + keyBias, -1);
        var heads = Attention.AdjustHeads(weights.matmul(v), q, hidden => ProjectKeysValues(hidden, headDim));
        var attended = heads.transpose(1, 2).contiguous().view(batch, time, dim);
        // The graph computes the residual projection only at token positions (zeros at padding).
        var residual = residual_proj is null ? x : residual_proj.call(x) * validColumn;
        var y = Insertions.AfterAttention(x, out_proj.call(attended)) + residual;

        // The feed-forward block also runs only at token positions.
        var ffn = Insertions.AfterFeedForward(y, fc2.call(functional.relu(fc1.call(ffn_norm.call(y))))) * validColumn;
        return (y + ffn).MoveToOuterDisposeScope();
    }

    private (Tensor Keys, Tensor Values) ProjectKeysValues(Tensor hidden, long headDim)
    {
        long batch = hidden.shape[0], time = hidden.shape[1];
        return (k_proj.call(hidden).view(batch, time, _heads, headDim).transpose(1, 2), v_proj.call(hidden).view(batch, time, _heads, headDim).transpose(1, 2));
    }
}
