using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>The decoder (<c>model</c>): <c>embed_tokens</c>, <c>layers</c>, final <c>norm</c>.</summary>
public sealed class LlamaModel : nn.Module
{
    private readonly LlamaConfig _config;
    private readonly Embedding embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly LlamaRmsNorm norm;

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
        register_module(nameof(embed_tokens), embed_tokens);
        register_module(nameof(layers), layers);
        register_module(nameof(norm), norm);
    }

    /// <summary>The token embedding (also the output head when embeddings are tied).</summary>
    public Embedding EmbedTokens => embed_tokens;

    /// <summary>
    /// Maps token ids [batch, time] to normalised hidden states [batch, time, hidden]. With a cache, the ids are the
    /// positions after those already cached.
    /// </summary>
    /// <param name="ids">Token ids (int64).</param>
    /// <param name="cache">Key/value cache, or null for a full forward from position 0.</param>
    public Tensor Forward(Tensor ids, KvCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        using var scope = NewDisposeScope();
        long past = cache?.Length ?? 0;
        long time = ids.shape[1];
        if (past + time > _config.MaxPositionEmbeddings)
            throw new ArgumentException($"{past + time} positions exceed max_position_embeddings {_config.MaxPositionEmbeddings}.", nameof(ids));
        var x = embed_tokens.call(ids);
        var (cos, sin) = LlamaRotaryEmbedding.Tables(past, time, _config.HeadDim, _config.RopeTheta, x.dtype, x.device);
        foreach (var layer in layers) x = layer.Forward(x, cos, sin, cache);
        return norm.call(x).MoveToOuterDisposeScope();
    }
}
