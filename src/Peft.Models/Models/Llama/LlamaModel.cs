using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>
/// The decoder (<c>model</c>): <c>embed_tokens</c>, <c>layers</c>, final <c>norm</c>. <see cref="AdaptableAttribute"/>: the
/// input embedding can be adapted by configuration (prompt tuning, <see cref="LlamaTargets.PromptEmbedding"/>) and the final
/// norm too (LayerNorm tuning).
/// </summary>
/// <remarks>With an active prompt the embedding prepends V virtual tokens, which take positions 0 to V - 1 (the text moves up
/// by V, as when PEFT passes the prompt and the text as <c>inputs_embeds</c>). With a cache the prompt enters it on the first
/// forward; later forwards drop the prefix their embedding prepends again.</remarks>
[Adaptable]
public sealed partial class LlamaModel : nn.Module, ITransformerStack
{
    private readonly LlamaConfig _config;
    private Module<Tensor, Tensor> embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private Module<Tensor, Tensor> norm;

    /// <summary>Creates the decoder for <paramref name="config"/>.</summary>
    /// <param name="config">Model sizes.</param>
    public LlamaModel(LlamaConfig config) : base(nameof(LlamaModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        _config = config;
        embed_tokens = Embedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new LlamaDecoderLayer(config, i)).ToArray());
        norm = new LlamaRmsNorm(config.HiddenSize, config.RmsNormEps);
        InitializePeft();
        _blocks = layers.Cast<nn.Module>().ToArray();
    }

    private readonly nn.Module[] _blocks;

    /// <summary>The token embedding (<c>embed_tokens</c>): the first layer's input depends on nothing else.</summary>
    public IReadOnlyList<nn.Module> EmbeddingModules => [embed_tokens];

    /// <summary>The decoder layers (<c>layers.0</c> … <c>layers.N-1</c>).</summary>
    public IReadOnlyList<nn.Module> Blocks => _blocks;

    /// <summary>The token embedding (an <see cref="AdaptedEmbedding"/> once configuration targeting wrapped it).</summary>
    public Module<Tensor, Tensor> EmbedTokens => embed_tokens;

    /// <summary>The token embedding's weight [vocab, hidden] (also the output head when embeddings are tied).</summary>
    public Parameter EmbedTokensWeight => EmbeddingWeight.Of(embed_tokens, nameof(embed_tokens));

    /// <summary>
    /// Maps token ids [batch, time] to normalised hidden states [batch, time, hidden] ([batch, V + time, hidden] on a forward
    /// without cached positions while a prompt of V virtual tokens is active). With a cache, the ids are the positions after
    /// those already cached.
    /// </summary>
    /// <param name="ids">Token ids (int64).</param>
    /// <param name="cache">Key/value cache, or null for a full forward from position 0.</param>
    /// <exception cref="ArgumentException">The positions would exceed <c>max_position_embeddings</c>.</exception>
    public Tensor Forward(Tensor ids, KvCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        using var scope = NewDisposeScope();
        long cached = cache?.Length ?? 0;
        long past = this.KeyValuePrefixLength() + cached;   // a key/value prefix takes the first positions, as PEFT's past key/values do
        long time = ids.shape[1];
        if (past + time > _config.MaxPositionEmbeddings)
            throw new ArgumentException($"{past + time} positions (key/value prefix included) exceed max_position_embeddings {_config.MaxPositionEmbeddings}.", nameof(ids));
        int frozen = this.GradientFreeBlocks();
        Tensor x;
        using (TransformerStacks.NoGradPrefix(frozen)) x = embed_tokens.call(ids);
        long virtualTokens = x.shape[1] - time;
        if (virtualTokens > 0 && cached > 0) x = x.narrow(1, virtualTokens, time);   // the prompt is cached already
        long positions = x.shape[1];
        if (past + positions > _config.MaxPositionEmbeddings)
            throw new ArgumentException($"{past + positions} positions ({virtualTokens} virtual tokens included) exceed max_position_embeddings {_config.MaxPositionEmbeddings}.", nameof(ids));
        var (cos, sin) = LlamaRotaryEmbedding.Tables(past, positions, _config.HeadDim, _config.RopeTheta, x.dtype, x.device);
        x = this.RunBlocks(x, frozen, (i, h) => layers[i].Forward(h, cos, sin, cache), cache is null, cos, sin);
        return norm.call(x).MoveToOuterDisposeScope();
    }
}
