using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Bert;

/// <summary>
/// A residual projection followed by post-layer-norm, BERT's <c>attention.output</c> (<c>BertSelfOutput</c>) and
/// <c>output</c> (<c>BertOutput</c>): <c>LayerNorm(dropout(dense(h)) + residual)</c>. <see cref="AdaptableAttribute"/>:
/// <c>dense</c> and <c>LayerNorm</c> can be adapted by configuration (docs/targets.md).
/// </summary>
[Adaptable]
public sealed partial class BertResidualOutput : nn.Module
{
    private Module<Tensor, Tensor> dense;
    private Module<Tensor, Tensor> LayerNorm;
    private Dropout dropout;

    /// <summary>Creates the block projecting <paramref name="inputSize"/> features back to the hidden size.</summary>
    /// <param name="config">Model sizes.</param>
    /// <param name="inputSize">Width of the projected input (hidden for attention, intermediate for the feed-forward).</param>
    public BertResidualOutput(BertConfig config, int inputSize) : base(nameof(BertResidualOutput))
    {
        ArgumentNullException.ThrowIfNull(config);
        dense = Linear(inputSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        dropout = Dropout(config.HiddenDropoutProb);
        InitializePeft();
    }

    /// <summary>The projection <c>dense</c> as it is now (its adapted wrapper once configuration wrapped it).</summary>
    internal nn.Module Dense => dense;

    /// <summary><c>LayerNorm(insert(dropout(dense(h))) + residual)</c>, with <c>insert</c> the layer's insertion point for
    /// this sub-layer (the adapters library's place: after dropout, before the residual add and the norm).</summary>
    /// <param name="h">The block's output before projection.</param>
    /// <param name="residual">The block's input.</param>
    /// <param name="insertions">The layer's insertion points, or null.</param>
    /// <param name="sublayer">Which of them this output is.</param>
    public Tensor Forward(Tensor h, Tensor residual, BlockInsertions? insertions = null, Sublayer sublayer = Sublayer.FeedForward)
    {
        using var scope = NewDisposeScope();
        var output = dropout.call(dense.call(h));
        if (insertions is not null) output = insertions.After(sublayer, residual, output);
        return LayerNorm.call(output + residual).MoveToOuterDisposeScope();
    }
}

/// <summary>BERT's attention block (<c>attention</c>): <c>self</c> then <c>output</c>.</summary>
public sealed class BertAttention : nn.Module
{
    private readonly BertSelfAttention self;
    private readonly BertResidualOutput output;

    /// <summary>Creates the attention block.</summary>
    /// <param name="config">Model sizes.</param>
    /// <param name="layer">Layer index.</param>
    public BertAttention(BertConfig config, int layer = 0) : base(nameof(BertAttention))
    {
        ArgumentNullException.ThrowIfNull(config);
        self = new BertSelfAttention(config, layer);
        output = new BertResidualOutput(config, config.HiddenSize);
        register_module(nameof(self), self);
        register_module(nameof(output), output);
        // The heads merged by attention.self are projected by attention.output.dense (dropout follows, in training only).
        self.Insertions.OutputProjection = () => output.Dense;
    }

    /// <summary>The points inside the self-attention (<see cref="BertSelfAttention.Insertions"/>).</summary>
    public AttentionInsertions Insertions => self.Insertions;

    /// <summary>Self-attention with its residual and norm.</summary>
    /// <param name="x">Hidden states [batch, time, hidden].</param>
    /// <param name="keyMask">Key padding mask (see <see cref="BertSelfAttention.Forward"/>), or null.</param>
    /// <param name="insertions">The layer's insertion points, or null.</param>
    public Tensor Forward(Tensor x, Tensor? keyMask, BlockInsertions? insertions = null)
    {
        using var scope = NewDisposeScope();
        return output.Forward(self.Forward(x, keyMask), x, insertions, Sublayer.Attention).MoveToOuterDisposeScope();
    }
}

/// <summary>One post-norm encoder layer (<c>bert.encoder.layer.N</c>): <c>attention</c>, <c>intermediate</c> (dense + GELU), <c>output</c>.</summary>
public sealed class BertLayer : nn.Module, ITransformerBlock
{
    private readonly BertAttention attention;
    private readonly BertIntermediate intermediate;
    private readonly BertResidualOutput output;

    /// <summary>Creates one layer.</summary>
    /// <param name="config">Model sizes.</param>
    /// <param name="layer">Layer index.</param>
    public BertLayer(BertConfig config, int layer = 0) : base(nameof(BertLayer))
    {
        ArgumentNullException.ThrowIfNull(config);
        attention = new BertAttention(config, layer);
        intermediate = new BertIntermediate(config);
        output = new BertResidualOutput(config, config.IntermediateSize);
        register_module(nameof(attention), attention);
        register_module(nameof(intermediate), intermediate);
        register_module(nameof(output), output);
        Insertions = new BlockInsertions(this, config.HiddenSize, config.HiddenSize, config.HiddenSize, config.HiddenSize) { Attention = attention.Insertions };
    }

    /// <summary>After <c>attention.output</c>'s and <c>output</c>'s dropout, before their residual add and LayerNorm (the
    /// sub-layer's input is the residual it adds).</summary>
    public BlockInsertions Insertions { get; }

    /// <summary>Runs the layer on hidden states [batch, time, hidden].</summary>
    /// <param name="x">Hidden states.</param>
    /// <param name="keyMask">Key padding mask, or null.</param>
    public Tensor Forward(Tensor x, Tensor? keyMask)
    {
        using var scope = NewDisposeScope();
        var h = attention.Forward(x, keyMask, Insertions);
        return output.Forward(intermediate.call(h), h, Insertions, Sublayer.FeedForward).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// BERT's feed-forward expansion (<c>intermediate</c>): <c>gelu(dense(x))</c>, the exact (erf) GELU.
/// <see cref="AdaptableAttribute"/>: <c>dense</c> can be adapted by configuration (docs/targets.md).
/// </summary>
[Adaptable]
public sealed partial class BertIntermediate : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> dense;

    /// <summary>Creates the expansion.</summary>
    /// <param name="config">Model sizes.</param>
    public BertIntermediate(BertConfig config) : base(nameof(BertIntermediate))
    {
        ArgumentNullException.ThrowIfNull(config);
        dense = Linear(config.HiddenSize, config.IntermediateSize);
        InitializePeft();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return functional.gelu(dense.call(x)).MoveToOuterDisposeScope();
    }
}
