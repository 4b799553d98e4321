using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Bert;

/// <summary>The encoder stack (<c>bert.encoder</c>): <c>layer.0</c> … <c>layer.N-1</c>.</summary>
public sealed class BertEncoder : nn.Module
{
    private readonly ModuleList<BertLayer> layer;

    /// <summary>Creates the stack.</summary>
    /// <param name="config">Model sizes.</param>
    public BertEncoder(BertConfig config) : base(nameof(BertEncoder))
    {
        ArgumentNullException.ThrowIfNull(config);
        layer = new ModuleList<BertLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new BertLayer(config, i)).ToArray());
        register_module(nameof(layer), layer);
    }

    /// <summary>The layers, bottom first.</summary>
    internal IReadOnlyList<nn.Module> Layers => layer.Cast<nn.Module>().ToArray();

    /// <summary>Runs every layer, the first <paramref name="gradientFreeLayers"/> under <c>no_grad</c>
    /// (<see cref="TransformerStacks.GradientFreeBlocks"/>).</summary>
    /// <param name="x">Embedded input [batch, time, hidden].</param>
    /// <param name="keyMask">Key padding mask, or null.</param>
    /// <param name="gradientFreeLayers">How many bottom layers need no autograd graph.</param>
    public Tensor Forward(Tensor x, Tensor? keyMask, int gradientFreeLayers = 0)
    {
        using var scope = NewDisposeScope();
        for (int i = 0; i < layer.Count; i++)
        {
            using (TransformerStacks.NoGradPrefix(gradientFreeLayers - i)) x = layer[i].Forward(x, keyMask);
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Layer <paramref name="index"/> on hidden states <paramref name="x"/>.</summary>
    /// <param name="index">The layer.</param>
    /// <param name="x">Its input.</param>
    /// <param name="keyMask">Key padding mask, or null.</param>
    internal Tensor Layer(int index, Tensor x, Tensor? keyMask) => layer[index].Forward(x, keyMask);
}

/// <summary>
/// BERT's pooler (<c>bert.pooler</c>): <c>tanh(dense(h[:, 0]))</c>, the first ([CLS]) position.
/// <see cref="AdaptableAttribute"/>: <c>dense</c> can be adapted by configuration (docs/targets.md).
/// </summary>
[Adaptable]
public sealed partial class BertPooler : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> dense;

    /// <summary>Creates the pooler.</summary>
    /// <param name="config">Model sizes.</param>
    public BertPooler(BertConfig config) : base(nameof(BertPooler))
    {
        ArgumentNullException.ThrowIfNull(config);
        dense = Linear(config.HiddenSize, config.HiddenSize);
        InitializePeft();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        return tanh(dense.call(hidden.select(1, 0))).MoveToOuterDisposeScope();
    }
}

/// <summary>The encoder with its pooler (<c>bert</c>): <c>embeddings</c>, <c>encoder</c>, <c>pooler</c>.</summary>
public sealed class BertModel : nn.Module, ITransformerStack
{
    private readonly BertEmbeddings embeddings;
    private readonly BertEncoder encoder;
    private readonly BertPooler pooler;

    /// <summary>Creates the encoder for <paramref name="config"/>.</summary>
    /// <param name="config">Model sizes.</param>
    public BertModel(BertConfig config) : base(nameof(BertModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        embeddings = new BertEmbeddings(config);
        encoder = new BertEncoder(config);
        pooler = new BertPooler(config);
        register_module(nameof(embeddings), embeddings);
        register_module(nameof(encoder), encoder);
        register_module(nameof(pooler), pooler);
        _blocks = encoder.Layers;
    }

    private readonly IReadOnlyList<nn.Module> _blocks;

    /// <summary>The embeddings (<c>embeddings</c>: word, position and token-type embeddings and their LayerNorm).</summary>
    public IReadOnlyList<nn.Module> EmbeddingModules => [embeddings];

    /// <summary>The encoder layers (<c>encoder.layer.0</c> … <c>encoder.layer.N-1</c>).</summary>
    public IReadOnlyList<nn.Module> Blocks => _blocks;

    /// <summary>
    /// Encodes token ids [batch, time]; returns the last hidden states [batch, time, hidden] and the pooled [CLS]
    /// representation [batch, hidden]. While a prompt of V virtual tokens is active the hidden states are
    /// [batch, V + time, hidden] and the pooler reads the first virtual token, as with PEFT's prompt tuning of a
    /// sequence classifier.
    /// </summary>
    /// <param name="ids">Token ids (int64).</param>
    /// <param name="attentionMask">[batch, time], nonzero (or true) for real tokens and zero for padding; null when
    /// nothing is padded. Padded positions are never attended to; their own outputs are meaningless.</param>
    /// <param name="tokenTypeIds">Segment ids [batch, time], or null for all zeros.</param>
    public (Tensor Hidden, Tensor Pooled) Forward(Tensor ids, Tensor? attentionMask = null, Tensor? tokenTypeIds = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.dim() != 2) throw new ArgumentException($"Expected token ids [batch, time], got {ids.dim()} dimension(s).", nameof(ids));
        if (attentionMask is not null && !attentionMask.shape.SequenceEqual(ids.shape))
            throw new ArgumentException($"attention mask shape [{string.Join(", ", attentionMask.shape)}] differs from the ids' [{string.Join(", ", ids.shape)}].", nameof(attentionMask));
        using var scope = NewDisposeScope();
        int frozen = this.GradientFreeBlocks();
        Tensor embedded;
        using (TransformerStacks.NoGradPrefix(frozen)) embedded = embeddings.Forward(ids, tokenTypeIds, this.KeyValuePrefixLength());
        long virtualTokens = embedded.shape[1] - ids.shape[1];
        Tensor? keyMask = null;
        if (attentionMask is not null)
        {
            var mask = attentionMask.to_type(ScalarType.Bool);
            // An active prompt's virtual tokens come first and are attended to by every token (PEFT prepends ones to the mask).
            if (virtualTokens > 0) mask = cat([ones(ids.shape[0], virtualTokens, dtype: ScalarType.Bool, device: mask.device), mask], 1);
            keyMask = mask.unsqueeze(1).unsqueeze(1);
        }
        var hidden = this.RunBlocks(embedded, frozen, (i, h) => encoder.Layer(i, h, keyMask), true, keyMask);
        var pooled = pooler.call(hidden);
        return (hidden.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }
}
