using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Bert;

/// <summary>
/// BERT's input embeddings (<c>bert.embeddings</c>): <c>word_embeddings</c> + absolute <c>position_embeddings</c>
/// (positions 0..time-1) + <c>token_type_embeddings</c>, then <c>LayerNorm</c> and dropout. The position and token
/// type id tensors are computed per call, so nothing besides the three tables and the norm is in the state dict
/// (transformers' <c>position_ids</c>/<c>token_type_ids</c> buffers are non-persistent too).
/// <see cref="AdaptableAttribute"/>: <c>word_embeddings</c> can be adapted by configuration (prompt tuning,
/// <see cref="BertTargets.PromptEmbedding"/>) and <c>LayerNorm</c> too (LayerNorm tuning).
/// </summary>
/// <remarks>With an active prompt, <c>word_embeddings</c> prepends V virtual tokens, which take positions 0 to V - 1 and
/// token type 0 (the text moves up by V, as when PEFT passes the prompt and the text as <c>inputs_embeds</c> and pads
/// <c>token_type_ids</c> with zeros).</remarks>
[Adaptable]
public sealed partial class BertEmbeddings : nn.Module
{
    private readonly int _maxPositions;
    private Module<Tensor, Tensor> word_embeddings;
    private readonly Embedding position_embeddings;
    private readonly Embedding token_type_embeddings;
    private Module<Tensor, Tensor> LayerNorm;
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
        InitializePeft();
    }

    /// <summary>Embeds token ids [batch, time] into hidden states [batch, time, hidden] ([batch, V + time, hidden] while a
    /// prompt of V virtual tokens is active).</summary>
    /// <param name="ids">Token ids (int64).</param>
    /// <param name="tokenTypeIds">Segment ids [batch, time], or null for all zeros.</param>
    /// <param name="firstPosition">The first token's position: the length of a key/value prefix, which takes the first
    /// positions as PEFT's past key/values do (transformers' <c>past_key_values_length</c>); 0 without one.</param>
    /// <exception cref="ArgumentException">The positions exceed <c>max_position_embeddings</c>.</exception>
    public Tensor Forward(Tensor ids, Tensor? tokenTypeIds, long firstPosition = 0)
    {
        ArgumentNullException.ThrowIfNull(ids);
        using var scope = NewDisposeScope();
        long time = ids.shape[1];
        if (firstPosition + time > _maxPositions)
            throw new ArgumentException($"{firstPosition + time} positions ({firstPosition} prefix positions included) exceed max_position_embeddings {_maxPositions}.", nameof(ids));
        var words = word_embeddings.call(ids);
        long count = words.shape[1], virtualTokens = count - time;
        if (firstPosition + count > _maxPositions)
            throw new ArgumentException($"{firstPosition + count} positions ({virtualTokens} virtual tokens included) exceed max_position_embeddings {_maxPositions}.", nameof(ids));
        var positions = arange(firstPosition, firstPosition + count, dtype: ScalarType.Int64, device: ids.device).unsqueeze(0);
        tokenTypeIds = tokenTypeIds is null
            ? zeros(ids.shape[0], count, dtype: ScalarType.Int64, device: ids.device)
            : virtualTokens > 0
                ? cat([zeros(ids.shape[0], virtualTokens, dtype: ScalarType.Int64, device: ids.device), tokenTypeIds.to_type(ScalarType.Int64)], 1)
                : tokenTypeIds;
        var x = words + position_embeddings.call(positions) + token_type_embeddings.call(tokenTypeIds);
        return dropout.call(LayerNorm.call(x)).MoveToOuterDisposeScope();
    }
}
