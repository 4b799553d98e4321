using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Bert;

/// <summary>
/// BERT's input embeddings (<c>bert.embeddings</c>): <c>word_embeddings</c> + absolute <c>position_embeddings</c>
/// (positions 0..time-1) + <c>token_type_embeddings</c>, then <c>LayerNorm</c> and dropout. The position and token
/// type id tensors are computed per call, so nothing besides the three tables and the norm is in the state dict
/// (transformers' <c>position_ids</c>/<c>token_type_ids</c> buffers are non-persistent too).
/// </summary>
public sealed class BertEmbeddings : nn.Module
{
    private readonly int _maxPositions;
    private readonly Embedding word_embeddings;
    private readonly Embedding position_embeddings;
    private readonly Embedding token_type_embeddings;
    private readonly TorchSharp.Modules.LayerNorm LayerNorm;
    private readonly Dropout dropout;

    /// <summary>Creates the embeddings for <paramref name="config"/>.</summary>
    /// <param name="config">Model sizes.</param>
    public BertEmbeddings(BertConfig config) : base(nameof(BertEmbeddings))
    {
        ArgumentNullException.ThrowIfNull(config);
        _maxPositions = config.MaxPositionEmbeddings;
        word_embeddings = Embedding(config.VocabSize, config.HiddenSize, padding_idx: config.PadTokenId);
        position_embeddings = Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        token_type_embeddings = Embedding(config.TypeVocabSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        dropout = Dropout(config.HiddenDropoutProb);
        register_module(nameof(word_embeddings), word_embeddings);
        register_module(nameof(position_embeddings), position_embeddings);
        register_module(nameof(token_type_embeddings), token_type_embeddings);
        register_module(nameof(LayerNorm), LayerNorm);
        register_module(nameof(dropout), dropout);
    }

    /// <summary>Embeds token ids [batch, time] into hidden states [batch, time, hidden].</summary>
    /// <param name="ids">Token ids (int64).</param>
    /// <param name="tokenTypeIds">Segment ids [batch, time], or null for all zeros.</param>
    public Tensor Forward(Tensor ids, Tensor? tokenTypeIds)
    {
        ArgumentNullException.ThrowIfNull(ids);
        using var scope = NewDisposeScope();
        long time = ids.shape[1];
        if (time > _maxPositions)
            throw new ArgumentException($"{time} positions exceed max_position_embeddings {_maxPositions}.", nameof(ids));
        var positions = arange(time, dtype: ScalarType.Int64, device: ids.device).unsqueeze(0);
        tokenTypeIds ??= zeros_like(ids, dtype: ScalarType.Int64);
        var x = word_embeddings.call(ids) + position_embeddings.call(positions) + token_type_embeddings.call(tokenTypeIds);
        return dropout.call(LayerNorm.call(x)).MoveToOuterDisposeScope();
    }
}
