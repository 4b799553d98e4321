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
    /// <exception cref="CheckpointFormatException">A required field is missing, a field has the wrong type or is out of
    /// range, the sizes are inconsistent, or the config asks for something this implementation does not model (an
    /// activation other than GELU, relative positions). The message names config.json's path, the field and the expected value.</exception>
    public static BertConfig FromHf(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int Required(int? value, string key) =>
            value ?? throw config.Invalid(key, $"\"{key}\" is missing; a BERT model needs it (an integer >= 1)");
        double? Probability(string key) => config.ReadNumber(key, 0, minInclusive: true, max: 1);

        string activation = config.ReadString("hidden_act") ?? "gelu";
        if (activation != "gelu")
            throw config.Invalid("hidden_act", $"\"hidden_act\" \"{activation}\" is not supported: this BERT uses the exact (erf) GELU (expected \"gelu\")");
        string positions = config.ReadString("position_embedding_type") ?? "absolute";
        if (positions != "absolute")
            throw config.Invalid("position_embedding_type", $"\"position_embedding_type\" \"{positions}\" is not supported (expected \"absolute\")");
        var id2label = config.Json["id2label"];
        if (id2label is not null and not JsonObject)
            throw config.Invalid("id2label", $"\"id2label\" must be an object (label index to name), not {id2label.ToJsonString()}");

        int numLabels = config.ReadInt("num_labels", 1) ?? (id2label is JsonObject labels && labels.Count > 0 ? labels.Count : 2);
        var result = new BertConfig
        {
            VocabSize = Required(config.VocabSize, "vocab_size"),
            HiddenSize = Required(config.HiddenSize, "hidden_size"),
            NumHiddenLayers = Required(config.NumHiddenLayers, "num_hidden_layers"),
            NumAttentionHeads = Required(config.NumAttentionHeads, "num_attention_heads"),
            IntermediateSize = Required(config.IntermediateSize, "intermediate_size"),
            MaxPositionEmbeddings = config.MaxPositionEmbeddings ?? 512,
            TypeVocabSize = config.ReadInt("type_vocab_size", 1) ?? 2,
            LayerNormEps = config.ReadNumber("layer_norm_eps", 0, minInclusive: false, max: 1) ?? 1e-12,
            HiddenDropoutProb = Probability("hidden_dropout_prob") ?? 0.1,
            AttentionProbsDropoutProb = Probability("attention_probs_dropout_prob") ?? 0.1,
            ClassifierDropout = Probability("classifier_dropout"),
            NumLabels = numLabels,
            PadTokenId = config.ReadInt("pad_token_id", 0) ?? 0,
        };
        if (result.Problems().FirstOrDefault() is var (field, problem) && field is not null)
            throw config.Invalid(field, problem);
        return result;
    }

    /// <summary>
    /// The base tensors (state-dict names and shapes, no adapters) a <see cref="BertForSequenceClassification"/> built
    /// from this configuration has, with the config.json keys behind each: for <see cref="HfCheckpoint.EnsureFits"/>
    /// before the model is allocated. Lazy.
    /// </summary>
    internal IEnumerable<ExpectedTensor> ExpectedTensors()
    {
        long h = HiddenSize, ff = IntermediateSize;
        string[] layer = ["num_hidden_layers", "hidden_size"];
        string[] mlp = ["num_hidden_layers", "hidden_size", "intermediate_size"];
        yield return new("bert.embeddings.word_embeddings.weight", [VocabSize, h], ["vocab_size", "hidden_size"]);
        yield return new("bert.embeddings.position_embeddings.weight", [MaxPositionEmbeddings, h], ["max_position_embeddings", "hidden_size"]);
        yield return new("bert.embeddings.token_type_embeddings.weight", [TypeVocabSize, h], ["type_vocab_size", "hidden_size"]);
        yield return new("bert.embeddings.LayerNorm.weight", [h], ["hidden_size"]);
        yield return new("bert.embeddings.LayerNorm.bias", [h], ["hidden_size"]);
        for (int i = 0; i < NumHiddenLayers; i++)
        {
            string p = $"bert.encoder.layer.{i}.";
            foreach (var name in new[] { "query", "key", "value" })
            {
                yield return new(p + "attention.self." + name + ".weight", [h, h], layer);
                yield return new(p + "attention.self." + name + ".bias", [h], layer);
            }
            yield return new(p + "attention.output.dense.weight", [h, h], layer);
            yield return new(p + "attention.output.dense.bias", [h], layer);
            yield return new(p + "attention.output.LayerNorm.weight", [h], layer);
            yield return new(p + "attention.output.LayerNorm.bias", [h], layer);
            yield return new(p + "intermediate.dense.weight", [ff, h], mlp);
            yield return new(p + "intermediate.dense.bias", [ff], mlp);
            yield return new(p + "output.dense.weight", [h, ff], mlp);
            yield return new(p + "output.dense.bias", [h], mlp);
            yield return new(p + "output.LayerNorm.weight", [h], layer);
            yield return new(p + "output.LayerNorm.bias", [h], layer);
        }
        yield return new("bert.pooler.dense.weight", [h, h], ["hidden_size"]);
        yield return new("bert.pooler.dense.bias", [h], ["hidden_size"]);
        yield return new("classifier.weight", [NumLabels, h], ["num_labels", "id2label", "hidden_size"]);
        yield return new("classifier.bias", [NumLabels], ["num_labels", "id2label"]);
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
        if (Problems().FirstOrDefault() is var (_, problem) && problem is not null)
            throw new ArgumentException(problem);
    }

    /// <summary>Every inconsistency, as (config.json key, message naming the value and what is expected).</summary>
    private IEnumerable<(string Field, string Problem)> Problems()
    {
        foreach (var (key, value) in new[] { ("vocab_size", VocabSize), ("hidden_size", HiddenSize), ("num_hidden_layers", NumHiddenLayers),
            ("num_attention_heads", NumAttentionHeads), ("intermediate_size", IntermediateSize), ("max_position_embeddings", MaxPositionEmbeddings),
            ("type_vocab_size", TypeVocabSize), ("num_labels", NumLabels) })
        {
            if (value <= 0) yield return (key, $"\"{key}\" must be an integer >= 1, not {value}; BERT sizes must be positive");
        }
        if (HiddenSize > 0 && NumAttentionHeads > 0 && HiddenSize % NumAttentionHeads != 0)
            yield return ("num_attention_heads", $"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}");
        if (PadTokenId < 0 || (VocabSize > 0 && PadTokenId >= VocabSize))
            yield return ("pad_token_id", $"\"pad_token_id\" must be in [0, vocab_size {VocabSize}), not {PadTokenId}");
        if (!(LayerNormEps > 0 && LayerNormEps <= 1))
            yield return ("layer_norm_eps", $"\"layer_norm_eps\" must be a finite number in (0, 1], not {LayerNormEps}");
        foreach (var (name, p) in new[] { ("hidden_dropout_prob", HiddenDropoutProb), ("attention_probs_dropout_prob", AttentionProbsDropoutProb), ("classifier_dropout", ClassifierDropoutProb) })
        {
            if (!(p >= 0 && p < 1)) yield return (name, $"Dropout probability \"{name}\" must be in [0, 1), not {p}");
        }
    }
}
