using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Bert;

/// <summary>
/// BERT's bidirectional self-attention (<c>attention.self</c>): <c>query</c>, <c>key</c>, <c>value</c> with bias,
/// through TorchSharp's fused <c>scaled_dot_product_attention</c> (scale 1/√headDim) with a key padding mask.
/// <see cref="AdaptableAttribute"/>: the three projections can be adapted by configuration; <see cref="BertTargets"/> holds
/// PEFT's default targets (LoRA on <c>query</c> and <c>value</c>).
/// </summary>
[Adaptable]
public sealed partial class BertSelfAttention : nn.Module
{
    private readonly int _heads;
    private readonly int _headDim;
    private readonly double _dropout;

    private Module<Tensor, Tensor> query;
    private Module<Tensor, Tensor> key;
    private Module<Tensor, Tensor> value;

    /// <summary>Creates the self-attention for <paramref name="config"/>.</summary>
    /// <param name="config">Model sizes.</param>
    /// <param name="layer">Layer index.</param>
    public BertSelfAttention(BertConfig config, int layer = 0) : base(nameof(BertSelfAttention))
    {
        ArgumentNullException.ThrowIfNull(config);
        _heads = config.NumAttentionHeads;
        _headDim = config.HeadDim;
        _dropout = config.AttentionProbsDropoutProb;
        query = Linear(config.HiddenSize, config.HiddenSize);
        key = Linear(config.HiddenSize, config.HiddenSize);
        value = Linear(config.HiddenSize, config.HiddenSize);
        InitializePeft();
        Insertions = new AttentionInsertions(this, new AttentionGeometry(layer, _heads, _heads, _headDim, config.HiddenSize));
    }

    /// <summary>The points inside this attention: a key/value prefix every query sees, and the heads before they are merged.</summary>
    public AttentionInsertions Insertions { get; }

    /// <summary>Attends from every position of <paramref name="x"/> [batch, time, hidden] to every unmasked one.</summary>
    /// <param name="x">Hidden states.</param>
    /// <param name="keyMask">Boolean [batch, 1, 1, time], true where a key may be attended to; null attends to all.</param>
    /// <returns>The merged heads [batch, time, hidden] (before <c>attention.output.dense</c>).</returns>
    public Tensor Forward(Tensor x, Tensor? keyMask)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1];
        var q = query.call(x).view(batch, time, _heads, _headDim).transpose(1, 2);
        var k = key.call(x).view(batch, time, _heads, _headDim).transpose(1, 2);
        var v = value.call(x).view(batch, time, _heads, _headDim).transpose(1, 2);
        double dropout = training ? _dropout : 0.0;
        long prefix = Insertions.PrefixLength;
        if (prefix > 0)
        {
            (k, v) = Insertions.PrependPrefix(k, v);
            // Every query sees the prefix: PEFT prepends ones to the attention mask.
            if (keyMask is not null) keyMask = cat([ones(keyMask.shape[0], 1, 1, prefix, dtype: ScalarType.Bool, device: keyMask.device), keyMask.to_type(ScalarType.Bool)], 3);
        }

        var attended = Insertions.AdjustHeads(functional.scaled_dot_product_attention(q, k, v, keyMask, dropout), q, ProjectKeysValues);
        return attended.transpose(1, 2).contiguous().view(batch, time, _heads * _headDim).MoveToOuterDisposeScope();
    }

    private (Tensor Keys, Tensor Values) ProjectKeysValues(Tensor hidden)
    {
        long batch = hidden.shape[0], time = hidden.shape[1];
        return (key.call(hidden).view(batch, time, _heads, _headDim).transpose(1, 2), value.call(hidden).view(batch, time, _heads, _headDim).transpose(1, 2));
    }
}
