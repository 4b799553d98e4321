using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
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
/// with an accessor has the right JSON type and range (sizes are integers &gt;= 1, <c>rms_norm_eps</c> is in (0, 1],
/// <c>rope_theta</c> is a finite number &gt; 0), so the accessors of a loaded config do not throw unless <see cref="Json"/>
/// is changed afterwards; then they throw <see cref="CheckpointFormatException"/> naming the field. Model families read
/// their other fields with <see cref="ReadInt"/>, <see cref="ReadNumber"/>, <see cref="ReadBool"/> and <see cref="ReadString"/>,
/// which check the same way.
/// </remarks>
public sealed class HfConfig
{
    /// <summary>The file name of a Hugging Face model configuration.</summary>
    public const string FileName = "config.json";

    /// <summary>The fields with typed accessors, their JSON type and range: <see cref="Load"/> and <see cref="Parse"/> check them.</summary>
    private static readonly (string Key, FieldKind Kind)[] s_knownFields =
    [
        ("model_type", FieldKind.String),
        ("hidden_size", FieldKind.Size), ("n_embd", FieldKind.Size),
        ("num_attention_heads", FieldKind.Size), ("n_head", FieldKind.Size),
        ("num_key_value_heads", FieldKind.Size),
        ("num_hidden_layers", FieldKind.Size), ("n_layer", FieldKind.Size),
        ("intermediate_size", FieldKind.Size),
        ("vocab_size", FieldKind.Size),
        ("max_position_embeddings", FieldKind.Size), ("n_positions", FieldKind.Size),
        ("rms_norm_eps", FieldKind.Epsilon),
        ("rope_theta", FieldKind.Positive),
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
        : this(json, null)
    {
    }

    private HfConfig(JsonObject json, string? sourcePath)
    {
        ArgumentNullException.ThrowIfNull(json);
        Json = json;
        SourcePath = sourcePath;
    }

    /// <summary>
    /// The file this configuration was read from (<see cref="Load"/>) or the source name given to <see cref="Parse"/>;
    /// <see langword="null"/> for a configuration built in code. Errors about its fields name it.
    /// </summary>
    public string? SourcePath { get; }

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

    /// <summary>
    /// Reads and validates <paramref name="path"/>: a regular file of at most <see cref="Serialization.PeftFileLimits.MaxJsonBytes"/>
    /// holding a JSON object (valid UTF-8, no duplicate keys) whose fields with accessors have the right type and range.
    /// </summary>
    /// <param name="path">A config.json file.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="CheckpointFormatException">The file is missing, is not a regular file, is too large, is not a JSON
    /// object, or a known field has the wrong type or is out of range; the message names the file, the field and the expected value.</exception>
    public static HfConfig Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var fullPath = Path.GetFullPath(path);
        JsonObject obj;
        try
        {
            obj = JsonFile.ReadObject(fullPath, JsonFileKind.ModelConfig);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CheckpointFormatException(fullPath, "the file does not exist (a Hugging Face model directory needs a config.json)", e);
        }
        return Validated(obj, fullPath);
    }

    /// <summary>Parses and validates a config.json document (the same checks as <see cref="Load"/>).</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">The file (or other source) named in error messages; becomes <see cref="SourcePath"/>.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="CheckpointFormatException">The text is not a JSON object, or a known field has the wrong type or is out of range.</exception>
    public static HfConfig Parse(string json, string sourceName = FileName)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(sourceName);
        return Validated(JsonFile.ParseObject(json, sourceName, JsonFileKind.ModelConfig), sourceName);
    }

    private static HfConfig Validated(JsonObject obj, string source)
    {
        var config = new HfConfig(obj, source);
        var fields = config.Fields;
        foreach (var (key, kind) in s_knownFields)
        {
            Read(fields, key, kind);
        }
        return config;
    }

    /// <summary>
    /// Reads an integer field in [<paramref name="min"/>, <paramref name="max"/>] (model families read their own fields with it).
    /// </summary>
    /// <param name="key">The config.json key.</param>
    /// <param name="min">The smallest valid value.</param>
    /// <param name="max">The largest valid value.</param>
    /// <returns>The value, or <see langword="null"/> when the key is absent or null.</returns>
    /// <exception cref="CheckpointFormatException">Not an integer, or out of range; names <see cref="SourcePath"/>, the key and the range.</exception>
    public int? ReadInt(string key, int min = 0, int max = int.MaxValue) => Fields.Int(key, min, max);

    /// <summary>Reads a finite number field greater than <paramref name="min"/> (or equal, with <paramref name="minInclusive"/>) and at most <paramref name="max"/>.</summary>
    /// <param name="key">The config.json key.</param>
    /// <param name="min">The lower bound.</param>
    /// <param name="minInclusive">Whether <paramref name="min"/> itself is valid.</param>
    /// <param name="max">The largest valid value.</param>
    /// <returns>The value, or <see langword="null"/> when the key is absent or null.</returns>
    /// <exception cref="CheckpointFormatException">Not a number, NaN or infinite (1e400), or out of range.</exception>
    public double? ReadNumber(string key, double min, bool minInclusive, double max = double.MaxValue) => Fields.Number(key, min, minInclusive, max);

    /// <summary>Reads a boolean field.</summary>
    /// <param name="key">The config.json key.</param>
    /// <returns>The value, or <see langword="null"/> when the key is absent or null.</returns>
    /// <exception cref="CheckpointFormatException">Not true or false.</exception>
    public bool? ReadBool(string key) => Fields.Bool(key);

    /// <summary>Reads a string field.</summary>
    /// <param name="key">The config.json key.</param>
    /// <returns>The value, or <see langword="null"/> when the key is absent or null.</returns>
    /// <exception cref="CheckpointFormatException">Not a string.</exception>
    public string? ReadString(string key) => Fields.String(key);

    /// <summary>An exception about field <paramref name="key"/> of this configuration, naming <see cref="SourcePath"/> (or config.json).</summary>
    /// <param name="key">The config.json key concerned.</param>
    /// <param name="problem">What is wrong: the key, the value found and the value expected.</param>
    /// <returns>The exception, to throw.</returns>
    public CheckpointFormatException Invalid(string key, string problem) => new(SourcePath ?? FileName, key, problem);

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
    public HfConfig Clone() => new((JsonObject)Json.DeepClone(), SourcePath);

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

    private JsonFields Fields => new(Json, (key, problem) => Invalid(key, problem));

    private static object? Read(JsonFields fields, string key, FieldKind kind) => kind switch
    {
        FieldKind.String => fields.String(key),
        FieldKind.Boolean => fields.Bool(key),
        FieldKind.Size => fields.Int(key, 1),
        FieldKind.Epsilon => fields.Number(key, 0, minInclusive: false, max: 1),
        FieldKind.Positive => fields.Number(key, 0, minInclusive: false),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private string? GetString(string key) => Fields.String(key);

    private int? GetInt(string key, string? alternative = null)
        => Get(key) is not null || alternative is null ? Fields.Int(key, 1) : Fields.Int(alternative, 1);

    private double? GetDouble(string key) => (double?)Read(Fields, key, s_knownFields.First(f => f.Key == key).Kind);

    private bool? GetBool(string key) => Fields.Bool(key);

    private JsonNode? Get(string key) => Json.TryGetPropertyValue(key, out var node) ? node : null;

    private void Set(string key, string? value) => Json[key] = value is null ? null : JsonValue.Create(value);

    private void Set(string key, int? value) => Json[key] = value is null ? null : JsonValue.Create(value.Value);

    private void Set(string key, double? value) => Json[key] = value is null ? null : JsonValue.Create(value.Value);

    private void Set(string key, bool? value) => Json[key] = value is null ? null : JsonValue.Create(value.Value);

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
        Boolean,
        Size,       // an integer >= 1
        Epsilon,    // a finite number in (0, 1]
        Positive,   // a finite number > 0
    }
}
