using System.Text.Json.Nodes;
using Peft.Checkpoints;

namespace Peft.Models.Bert;

/// <summary>
/// The sizes of a BERT-style encoder with a sequence-classification head, read from a Hugging Face
/// <c>config.json</c>. Defaults follow transformers' <c>BertConfig</c> where a field is optional.
/// </summary>
public sealed record BertConfig
{
    /// <summary><c>vocab_size</c>.</summary>
    public required int VocabSize { get; init; }

    /// <summary><c>hidden_size</c>.</summary>
    public required int HiddenSize { get; init; }

    /// <summary><c>num_hidden_layers</c>.</summary>
    public required int NumHiddenLayers { get; init; }

    /// <summary><c>num_attention_heads</c>.</summary>
    public required int NumAttentionHeads { get; init; }

    /// <summary><c>intermediate_size</c> (the feed-forward width).</summary>
    public required int IntermediateSize { get; init; }

    /// <summary><c>max_position_embeddings</c> (default 512).</summary>
    public int MaxPositionEmbeddings { get; init; } = 512;

    /// <summary><c>type_vocab_size</c>, the number of token types (segments; default 2).</summary>
    public int TypeVocabSize { get; init; } = 2;

    /// <summary><c>layer_norm_eps</c> (default 1e-12).</summary>
    public double LayerNormEps { get; init; } = 1e-12;

    /// <summary><c>hidden_dropout_prob</c> (default 0.1), applied in training mode only.</summary>
    public double HiddenDropoutProb { get; init; } = 0.1;

    /// <summary><c>attention_probs_dropout_prob</c> (default 0.1), applied in training mode only.</summary>
    public double AttentionProbsDropoutProb { get; init; } = 0.1;

    /// <summary><c>classifier_dropout</c>; <see cref="HiddenDropoutProb"/> when absent, as transformers.</summary>
    public double? ClassifierDropout { get; init; }

    /// <summary>The number of labels (<c>num_labels</c>, or the size of <c>id2label</c>; default 2).</summary>
    public int NumLabels { get; init; } = 2;

    /// <summary><c>pad_token_id</c> (default 0).</summary>
    public int PadTokenId { get; init; }

    /// <summary>The dropout probability the classification head actually uses.</summary>
    public double ClassifierDropoutProb => ClassifierDropout ?? HiddenDropoutProb;

    /// <summary>The per-head width.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Reads a BERT configuration.</summary>
    /// <param name="config">A parsed <c>config.json</c>.</param>
    /// <exception cref="ArgumentException">A required field is missing, the sizes are inconsistent, or the config asks
    /// for something this implementation does not model (an activation other than GELU, relative positions).</exception>
    public static BertConfig FromHf(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int Required(int? value, string key) =>
            value ?? throw new ArgumentException($"config.json has no \"{key}\", which a BERT model needs.", nameof(config));
        double? Double(string key) => config.Json[key] is JsonValue node ? node.GetValue<double>() : null;
        int? Int(string key) => config.Json[key] is JsonValue node ? node.GetValue<int>() : null;
        string? String(string key) => config.Json[key] is JsonValue node ? node.GetValue<string>() : null;

        string activation = String("hidden_act") ?? "gelu";
        if (activation != "gelu")
            throw new ArgumentException($"hidden_act \"{activation}\" is not supported: this BERT uses the exact (erf) GELU, \"gelu\".", nameof(config));
        string positions = String("position_embedding_type") ?? "absolute";
        if (positions != "absolute")
            throw new ArgumentException($"position_embedding_type \"{positions}\" is not supported: only \"absolute\".", nameof(config));

        int numLabels = Int("num_labels") ?? (config.Json["id2label"] as JsonObject)?.Count ?? 2;
        var result = new BertConfig
        {
            VocabSize = Required(config.VocabSize, "vocab_size"),
            HiddenSize = Required(config.HiddenSize, "hidden_size"),
            NumHiddenLayers = Required(config.NumHiddenLayers, "num_hidden_layers"),
            NumAttentionHeads = Required(config.NumAttentionHeads, "num_attention_heads"),
            IntermediateSize = Required(config.IntermediateSize, "intermediate_size"),
            MaxPositionEmbeddings = config.MaxPositionEmbeddings ?? 512,
            TypeVocabSize = Int("type_vocab_size") ?? 2,
            LayerNormEps = Double("layer_norm_eps") ?? 1e-12,
            HiddenDropoutProb = Double("hidden_dropout_prob") ?? 0.1,
            AttentionProbsDropoutProb = Double("attention_probs_dropout_prob") ?? 0.1,
            ClassifierDropout = Double("classifier_dropout"),
            NumLabels = numLabels,
            PadTokenId = Int("pad_token_id") ?? 0,
        };
        result.Validate();
        return result;
    }

    /// <summary>Writes this configuration as a transformers <c>BertConfig</c> config.json for
    /// <c>BertForSequenceClassification</c> (labels as <c>id2label</c>/<c>label2id</c>, <c>LABEL_i</c>).</summary>
    public HfConfig ToHf()
    {
        var config = new HfConfig
        {
            ModelType = "bert",
            VocabSize = VocabSize,
            HiddenSize = HiddenSize,
            NumHiddenLayers = NumHiddenLayers,
            NumAttentionHeads = NumAttentionHeads,
            IntermediateSize = IntermediateSize,
            MaxPositionEmbeddings = MaxPositionEmbeddings,
            TorchDType = "float32",
        };
        var json = config.Json;
        json["architectures"] = new JsonArray("BertForSequenceClassification");
        json["hidden_act"] = "gelu";
        json["position_embedding_type"] = "absolute";
        json["type_vocab_size"] = TypeVocabSize;
        json["layer_norm_eps"] = LayerNormEps;
        json["hidden_dropout_prob"] = HiddenDropoutProb;
        json["attention_probs_dropout_prob"] = AttentionProbsDropoutProb;
        json["classifier_dropout"] = ClassifierDropout is double d ? JsonValue.Create(d) : null;
        json["pad_token_id"] = PadTokenId;
        var id2label = new JsonObject();
        var label2id = new JsonObject();
        for (int i = 0; i < NumLabels; i++)
        {
            id2label[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = $"LABEL_{i}";
            label2id[$"LABEL_{i}"] = i;
        }

        json["id2label"] = id2label;
        json["label2id"] = label2id;
        return config;
    }

    /// <summary>Checks that the sizes fit together (positive, heads divide the hidden size, probabilities in [0, 1)).</summary>
    /// <exception cref="ArgumentException">They do not.</exception>
    public void Validate()
    {
        if (VocabSize <= 0 || HiddenSize <= 0 || NumHiddenLayers <= 0 || NumAttentionHeads <= 0 || IntermediateSize <= 0
            || MaxPositionEmbeddings <= 0 || TypeVocabSize <= 0 || NumLabels <= 0)
            throw new ArgumentException("BERT sizes must be positive.");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException($"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}.");
        foreach (double p in new[] { HiddenDropoutProb, AttentionProbsDropoutProb, ClassifierDropoutProb })
        {
            if (!(p >= 0 && p < 1)) throw new ArgumentException($"Dropout probability {p} is not in [0, 1).");
        }
    }
}
