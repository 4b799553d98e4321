using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Peft.Checkpoints;

/// <summary>
/// A Hugging Face <c>config.json</c>: the whole document as a <see cref="JsonObject"/> (<see cref="Json"/>, every key
/// kept, including ones this library does not know) plus typed accessors for the fields common to transformer models.
/// </summary>
/// <remarks>
/// Accessors return <see langword="null"/> when a key is absent or JSON <c>null</c>. Where a model family spells a field
/// differently (GPT-2's <c>n_embd</c>, <c>n_head</c>, <c>n_layer</c>, <c>n_positions</c>) the accessor falls back to that
/// spelling, as transformers' <c>attribute_map</c> does. <see cref="Load"/> and <see cref="Parse"/> check that every field
/// with an accessor has the right JSON type, so the accessors of a loaded config do not throw unless <see cref="Json"/>
/// is changed afterwards.
/// </remarks>
public sealed class HfConfig
{
    /// <summary>The file name of a Hugging Face model configuration.</summary>
    public const string FileName = "config.json";

    private static readonly (string Key, FieldKind Kind)[] s_knownFields =
    [
        ("model_type", FieldKind.String),
        ("hidden_size", FieldKind.Integer), ("n_embd", FieldKind.Integer),
        ("num_attention_heads", FieldKind.Integer), ("n_head", FieldKind.Integer),
        ("num_key_value_heads", FieldKind.Integer),
        ("num_hidden_layers", FieldKind.Integer), ("n_layer", FieldKind.Integer),
        ("intermediate_size", FieldKind.Integer),
        ("vocab_size", FieldKind.Integer),
        ("max_position_embeddings", FieldKind.Integer), ("n_positions", FieldKind.Integer),
        ("rms_norm_eps", FieldKind.Number),
        ("rope_theta", FieldKind.Number),
        ("tie_word_embeddings", FieldKind.Boolean),
        ("torch_dtype", FieldKind.String), ("dtype", FieldKind.String),
    ];

    /// <summary>Creates an empty configuration (<c>{}</c>).</summary>
    public HfConfig()
        : this(new JsonObject())
    {
    }

    /// <summary>Wraps <paramref name="json"/> (not copied: changes to either are seen by both).</summary>
    /// <param name="json">The configuration document.</param>
    public HfConfig(JsonObject json)
    {
        ArgumentNullException.ThrowIfNull(json);
        Json = json;
    }

    /// <summary>The whole document. Unknown keys are kept and written back by <see cref="Save"/>.</summary>
    public JsonObject Json { get; }

    /// <summary><c>model_type</c> (<c>"llama"</c>, <c>"gpt2"</c>, <c>"bert"</c>, ...).</summary>
    public string? ModelType { get => GetString("model_type"); set => Set("model_type", value); }

    /// <summary><c>hidden_size</c> (GPT-2: <c>n_embd</c>).</summary>
    public int? HiddenSize { get => GetInt("hidden_size", "n_embd"); set => Set("hidden_size", value); }

    /// <summary><c>num_attention_heads</c> (GPT-2: <c>n_head</c>).</summary>
    public int? NumAttentionHeads { get => GetInt("num_attention_heads", "n_head"); set => Set("num_attention_heads", value); }

    /// <summary><c>num_key_value_heads</c> as written (transformers treats an absent value as <see cref="NumAttentionHeads"/>).</summary>
    public int? NumKeyValueHeads { get => GetInt("num_key_value_heads"); set => Set("num_key_value_heads", value); }

    /// <summary><c>num_hidden_layers</c> (GPT-2: <c>n_layer</c>).</summary>
    public int? NumHiddenLayers { get => GetInt("num_hidden_layers", "n_layer"); set => Set("num_hidden_layers", value); }

    /// <summary><c>intermediate_size</c>.</summary>
    public int? IntermediateSize { get => GetInt("intermediate_size"); set => Set("intermediate_size", value); }

    /// <summary><c>vocab_size</c>.</summary>
    public int? VocabSize { get => GetInt("vocab_size"); set => Set("vocab_size", value); }

    /// <summary><c>max_position_embeddings</c> (GPT-2: <c>n_positions</c>).</summary>
    public int? MaxPositionEmbeddings { get => GetInt("max_position_embeddings", "n_positions"); set => Set("max_position_embeddings", value); }

    /// <summary><c>rms_norm_eps</c>.</summary>
    public double? RmsNormEps { get => GetDouble("rms_norm_eps"); set => Set("rms_norm_eps", value); }

    /// <summary><c>rope_theta</c>.</summary>
    public double? RopeTheta { get => GetDouble("rope_theta"); set => Set("rope_theta", value); }

    /// <summary>
    /// <c>tie_word_embeddings</c> as written. transformers' <c>PretrainedConfig</c> defaults it to <see langword="true"/>
    /// (GPT-2's config.json usually omits it); Llama-style configs write it explicitly. See <see cref="TiesWordEmbeddings"/>.
    /// </summary>
    public bool? TieWordEmbeddings { get => GetBool("tie_word_embeddings"); set => Set("tie_word_embeddings", value); }

    /// <summary><see cref="TieWordEmbeddings"/> with transformers' default (<see langword="true"/>) when absent.</summary>
    public bool TiesWordEmbeddings => TieWordEmbeddings ?? true;

    /// <summary>
    /// <c>torch_dtype</c> (<c>"float32"</c>, <c>"float16"</c>, <c>"bfloat16"</c>); newer transformers write it as
    /// <c>dtype</c>, which is read when <c>torch_dtype</c> is absent. Setting it writes <c>torch_dtype</c>.
    /// </summary>
    public string? TorchDType { get => GetString("torch_dtype") ?? GetString("dtype"); set => Set("torch_dtype", value); }

    /// <summary>Reads and validates <paramref name="path"/>.</summary>
    /// <param name="path">A config.json file.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="CheckpointFormatException">The file is missing, is not a JSON object, or a known field has the wrong type.</exception>
    public static HfConfig Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var fullPath = Path.GetFullPath(path);
        string text;
        try
        {
            text = File.ReadAllText(fullPath, Encoding.UTF8);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CheckpointFormatException(fullPath, "the file does not exist (a Hugging Face model directory needs a config.json)", e);
        }
        return Parse(text, fullPath);
    }

    /// <summary>Parses and validates a config.json document.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">The file (or other source) named in error messages.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="CheckpointFormatException">The text is not a JSON object, or a known field has the wrong type.</exception>
    public static HfConfig Parse(string json, string sourceName = FileName)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(sourceName);
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(sourceName, $"not valid JSON ({e.Message})", e);
        }
        if (node is not JsonObject obj)
        {
            throw new CheckpointFormatException(sourceName, $"the top level must be a JSON object, not {Describe(node)}");
        }
        foreach (var (key, kind) in s_knownFields)
        {
            if (obj.TryGetPropertyValue(key, out var value) && value is not null && !Is(value, kind))
            {
                throw new CheckpointFormatException(sourceName, $"\"{key}\" must be {DescribeKind(kind)}, not {Describe(value)} ({value.ToJsonString()})");
            }
        }
        return new HfConfig(obj);
    }

    /// <summary>
    /// Writes the configuration to <paramref name="path"/> as transformers does (2-space indent, keys sorted, trailing
    /// newline), atomically: a temporary file in the same directory is renamed over the destination.
    /// </summary>
    /// <param name="path">The destination file; its directory must exist.</param>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var text = ToJsonString();
        AtomicFile.WriteAllText(path, text);
    }

    /// <summary>The document as transformers writes it: 2-space indent, keys sorted recursively, trailing newline.</summary>
    /// <returns>The JSON text.</returns>
    public string ToJsonString()
    {
        var sorted = Sort(Json)!;
        return sorted.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 2 }) + "\n";
    }

    /// <summary>A deep copy.</summary>
    /// <returns>A configuration that shares nothing with this one.</returns>
    public HfConfig Clone() => new((JsonObject)Json.DeepClone());

    /// <summary>Maps a transformers dtype name (<c>"float32"</c>, <c>"float16"</c>, <c>"bfloat16"</c>, <c>"float64"</c>) to TorchSharp's.</summary>
    /// <param name="name">The name, with or without a <c>torch.</c> prefix.</param>
    /// <param name="dtype">The element type.</param>
    /// <returns><see langword="false"/> for other names.</returns>
    public static bool TryParseTorchDType(string? name, out ScalarType dtype)
    {
        var bare = name is not null && name.StartsWith("torch.", StringComparison.Ordinal) ? name["torch.".Length..] : name;
        switch (bare)
        {
            case "float32" or "float": dtype = ScalarType.Float32; return true;
            case "float16" or "half": dtype = ScalarType.Float16; return true;
            case "bfloat16": dtype = ScalarType.BFloat16; return true;
            case "float64" or "double": dtype = ScalarType.Float64; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>The transformers name of a floating-point element type (<c>"float32"</c>, <c>"float16"</c>, <c>"bfloat16"</c>, <c>"float64"</c>).</summary>
    /// <param name="dtype">A floating-point element type.</param>
    /// <returns>The name.</returns>
    /// <exception cref="ArgumentOutOfRangeException">Not one of those four types.</exception>
    public static string TorchDTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float64 => "float64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Only float32, float16, bfloat16 and float64 have a config.json name."),
    };

    private string? GetString(string key)
    {
        var node = Get(key);
        if (node is null) return null;
        return Is(node, FieldKind.String) ? node.GetValue<string>() : throw WrongType(key, FieldKind.String, node);
    }

    private int? GetInt(string key, string? alternative = null)
    {
        var node = Get(key) ?? (alternative is null ? null : Get(alternative));
        if (node is null) return null;
        if (!Is(node, FieldKind.Integer)) throw WrongType(Get(key) is null ? alternative! : key, FieldKind.Integer, node);
        return checked((int)Element(node).GetInt64());
    }

    private double? GetDouble(string key)
    {
        var node = Get(key);
        if (node is null) return null;
        return Is(node, FieldKind.Number) ? Element(node).GetDouble() : throw WrongType(key, FieldKind.Number, node);
    }

    private bool? GetBool(string key)
    {
        var node = Get(key);
        if (node is null) return null;
        return Is(node, FieldKind.Boolean) ? node.GetValue<bool>() : throw WrongType(key, FieldKind.Boolean, node);
    }

    private JsonNode? Get(string key) => Json.TryGetPropertyValue(key, out var node) ? node : null;

    private void Set(string key, string? value) => Json[key] = value is null ? null : JsonValue.Create(value);

    private void Set(string key, int? value) => Json[key] = value is null ? null : JsonValue.Create(value.Value);

    private void Set(string key, double? value) => Json[key] = value is null ? null : JsonValue.Create(value.Value);

    private void Set(string key, bool? value) => Json[key] = value is null ? null : JsonValue.Create(value.Value);

    private static bool Is(JsonNode node, FieldKind kind)
    {
        if (node is not JsonValue value) return false;
        var element = Element(value);
        return kind switch
        {
            FieldKind.String => element.ValueKind == JsonValueKind.String,
            FieldKind.Boolean => element.ValueKind is JsonValueKind.True or JsonValueKind.False,
            FieldKind.Number => element.ValueKind == JsonValueKind.Number,
            FieldKind.Integer => element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out var n) && n is >= 0 and <= int.MaxValue,
            _ => false,
        };
    }

    private static JsonElement Element(JsonNode node) => JsonSerializer.SerializeToElement(node);

    private static FormatException WrongType(string key, FieldKind kind, JsonNode node)
        => new(string.Create(CultureInfo.InvariantCulture, $"config.json field \"{key}\" must be {DescribeKind(kind)}, not {Describe(node)} ({node.ToJsonString()})."));

    private static string DescribeKind(FieldKind kind) => kind switch
    {
        FieldKind.String => "a string",
        FieldKind.Boolean => "true or false",
        FieldKind.Number => "a number",
        _ => "a non-negative integer",
    };

    private static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v => Element(v).ValueKind switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => "a value",
        },
        _ => "a value",
    };

    private static JsonNode? Sort(JsonNode? node) => node switch
    {
        JsonObject obj => new JsonObject(obj.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => new KeyValuePair<string, JsonNode?>(p.Key, Sort(p.Value)))),
        JsonArray array => new JsonArray(array.Select(Sort).ToArray()),
        null => null,
        _ => node.DeepClone(),
    };

    private enum FieldKind
    {
        String,
        Integer,
        Number,
        Boolean,
    }
}
