using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Peft.Serialization;

/// <summary>
/// The parts of a Hugging Face PEFT <c>adapter_config.json</c> this library reads. Unknown keys are kept in
/// <see cref="Raw"/> and otherwise ignored, so configs written by newer PEFT versions still load.
/// </summary>
public sealed record AdapterConfig
{
    /// <summary>PEFT's <c>peft_type</c>: "LORA", "LOKR", "PROMPT_TUNING", ...</summary>
    public required string PeftType { get; init; }

    /// <summary><c>task_type</c> (e.g. "CAUSAL_LM"), or null.</summary>
    public string? TaskType { get; init; }

    /// <summary><c>base_model_name_or_path</c>, or null.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary><c>target_modules</c> as a list, or empty when the config uses a regex string (see <see cref="TargetModulesRegex"/>).</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = Array.Empty<string>();

    /// <summary><c>target_modules</c> when it is a regular expression string (full match).</summary>
    public string? TargetModulesRegex { get; init; }

    /// <summary><c>exclude_modules</c> as a list (same matching as <see cref="TargetModules"/>), or empty.</summary>
    public IReadOnlyList<string> ExcludeModules { get; init; } = Array.Empty<string>();

    /// <summary><c>exclude_modules</c> when it is a regular expression string (full match).</summary>
    public string? ExcludeModulesRegex { get; init; }

    /// <summary><c>layers_to_transform</c>: the layer indices a list <c>target_modules</c> is restricted to, or empty for all.</summary>
    public IReadOnlyList<int> LayersToTransform { get; init; } = Array.Empty<int>();

    /// <summary><c>layers_pattern</c>: names of the module lists whose index <see cref="LayersToTransform"/> refers to.</summary>
    public IReadOnlyList<string> LayersPattern { get; init; } = Array.Empty<string>();

    /// <summary>
    /// <c>modules_to_save</c>: names of whole modules whose trained copies the adapter file carries (a classification
    /// head such as <c>classifier</c> or <c>score</c>), or empty. PEFT selects every module whose name ends with an entry
    /// (a plain suffix match, no dot required).
    /// </summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = Array.Empty<string>();

    /// <summary><c>r</c> (LoRA, LoKr).</summary>
    public int R { get; init; } = 8;

    /// <summary><c>lora_alpha</c> (LoRA) or <c>alpha</c> (LoKr).</summary>
    public double Alpha { get; init; } = 8;

    /// <summary><c>lora_dropout</c>.</summary>
    public double Dropout { get; init; }

    /// <summary><c>use_rslora</c>.</summary>
    public bool UseRsLora { get; init; }

    /// <summary><c>use_dora</c> (not supported yet: loading such an adapter fails with a clear message).</summary>
    public bool UseDora { get; init; }

    /// <summary><c>fan_in_fan_out</c>: the adapted base layers are stored [in, out] (Conv1D); see <see cref="IFanInFanOutLayers"/>.</summary>
    public bool FanInFanOut { get; init; }

    /// <summary><c>bias</c>: "none", "all" or "lora_only" (only "none" is supported).</summary>
    public string Bias { get; init; } = "none";

    /// <summary><c>lora_bias</c> (a trainable bias on lora_B; not supported: loading such an adapter fails with a clear message).</summary>
    public bool LoraBias { get; init; }

    /// <summary><c>rank_pattern</c>: module name pattern to rank.</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();

    /// <summary><c>alpha_pattern</c>: module name pattern to alpha.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = new Dictionary<string, double>();

    /// <summary>LoKr <c>decompose_factor</c>.</summary>
    public int DecomposeFactor { get; init; } = -1;

    /// <summary>LoKr <c>decompose_both</c>.</summary>
    public bool DecomposeBoth { get; init; }

    /// <summary>Prompt tuning <c>num_virtual_tokens</c>.</summary>
    public int NumVirtualTokens { get; init; }

    /// <summary>Prompt tuning <c>token_dim</c>.</summary>
    public int TokenDim { get; init; }

    /// <summary>The whole JSON object as read (unknown keys included).</summary>
    public JsonObject Raw { get; init; } = new();

    /// <summary>Reads and validates a config file; errors name the file and the field.</summary>
    public static AdapterConfig Read(string path)
    {
        var obj = AdapterConfigFile.Read(path);
        return FromJson(obj, path);
    }

    /// <summary>Interprets a parsed config object; <paramref name="source"/> names it in error messages.</summary>
    public static AdapterConfig FromJson(JsonObject obj, string source)
    {
        string peftType = GetString(obj, "peft_type", source)
            ?? throw new AdapterFormatException($"{source}: \"peft_type\" is missing; PEFT configs always name their method (e.g. \"LORA\").");
        bool isLokr = peftType == "LOKR";
        var (targets, regex) = GetModuleSelection(obj, "target_modules", source);
        var (excluded, excludedRegex) = GetModuleSelection(obj, "exclude_modules", source);
        var layers = new List<int>();
        switch (obj["layers_to_transform"])
        {
            case null:
                break;
            case JsonArray array:
                foreach (var item in array)
                {
                    layers.Add(item is null
                        ? throw new AdapterFormatException($"{source}: \"layers_to_transform\" must hold integers, found null.")
                        : ToInt(item, "layers_to_transform", source));
                }
                break;
            case var single:
                layers.Add(ToInt(single, "layers_to_transform", source));
                break;
        }
        var (layersPattern, layersPatternRegex) = GetModuleSelection(obj, "layers_pattern", source);
        var (modulesToSave, modulesToSaveRegex) = GetModuleSelection(obj, "modules_to_save", source);
        if (modulesToSaveRegex is not null)
            throw new AdapterFormatException($"{source}: \"modules_to_save\" must be a list of module names, found the string \"{modulesToSaveRegex}\".");
        if (layersPatternRegex is not null) layersPattern = new List<string> { layersPatternRegex };

        return new AdapterConfig
        {
            PeftType = peftType,
            TaskType = GetString(obj, "task_type", source),
            BaseModelNameOrPath = GetString(obj, "base_model_name_or_path", source),
            TargetModules = targets,
            TargetModulesRegex = regex,
            ExcludeModules = excluded,
            ExcludeModulesRegex = excludedRegex,
            LayersToTransform = layers,
            LayersPattern = layersPattern,
            ModulesToSave = modulesToSave,
            R = GetInt(obj, "r", source) ?? 8,
            Alpha = GetDouble(obj, isLokr ? "alpha" : "lora_alpha", source) ?? 8,
            Dropout = GetDouble(obj, "lora_dropout", source) ?? 0,
            UseRsLora = GetBool(obj, "use_rslora", source) ?? false,
            UseDora = GetBool(obj, "use_dora", source) ?? false,
            FanInFanOut = GetBool(obj, "fan_in_fan_out", source) ?? false,
            Bias = GetString(obj, "bias", source) ?? "none",
            LoraBias = GetBool(obj, "lora_bias", source) ?? false,
            RankPattern = GetMap(obj, "rank_pattern", source, n => ToInt(n, "rank_pattern", source)),
            AlphaPattern = GetMap(obj, "alpha_pattern", source, n => ToDouble(n, "alpha_pattern", source)),
            DecomposeFactor = GetInt(obj, "decompose_factor", source) ?? -1,
            DecomposeBoth = GetBool(obj, "decompose_both", source) ?? false,
            NumVirtualTokens = GetInt(obj, "num_virtual_tokens", source) ?? 0,
            TokenDim = GetInt(obj, "token_dim", source) ?? 0,
            Raw = obj,
        };
    }

    /// <summary>The rank for a module: the first <c>rank_pattern</c> key matching its name (PEFT's
    /// <c>get_pattern_key</c>: <c>(.*\.)?key$</c>, in the file's order), else <see cref="R"/>.</summary>
    public int RankFor(string modulePath) => PeftTargets.PatternValue(RankPattern, modulePath, out _) ?? R;

    /// <summary>The alpha for a module: <c>alpha_pattern</c> matched like <see cref="RankFor"/>, else <see cref="Alpha"/>.</summary>
    public double AlphaFor(string modulePath) => PeftTargets.PatternValue(AlphaPattern, modulePath, out _) ?? Alpha;

    /// <summary>
    /// PEFT's target matching (<c>check_target_module_exists</c>) for one module name: a list entry matches a module
    /// whose name equals it or ends with "." + entry, restricted to <see cref="LayersToTransform"/> when set; a string
    /// is a full regular-expression match. Modules matched by <c>exclude_modules</c> are never targeted. "all-linear"
    /// depends on the layer kind, so it is answered by <see cref="PeftTargeting.ResolveTargets"/> on a model, not here
    /// (false). The rules are <see cref="TargetModules"/>', shared with configuration targeting.
    /// </summary>
    public bool Targets(string modulePath)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        if ((ExcludeModules.Count > 0 || ExcludeModulesRegex is not null)
            && Peft.TargetModules.FromPeft(ExcludeModulesRegex, ExcludeModules).IsMatch(modulePath)) return false;
        if (TargetModules.Count == 0 && TargetModulesRegex is null) return false;
        var targets = Peft.TargetModules.FromPeft(TargetModulesRegex, TargetModules);
        if (!targets.IsMatch(modulePath)) return false;
        return targets.Kind == TargetModulesKind.Regex || Peft.TargetModules.InLayers(modulePath, LayersToTransform, LayersPattern);
    }

    /// <summary>Serialises like PEFT's <c>save_pretrained</c>: keys sorted, 2-space indent.</summary>
    public static string ToJson(IDictionary<string, JsonNode?> fields)
    {
        var sorted = new JsonObject();
        foreach (var key in fields.Keys.OrderBy(k => k, StringComparer.Ordinal)) sorted[key] = fields[key]?.DeepClone();
        var options = new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        return sorted.ToJsonString(options).Replace("\r\n", "\n", StringComparison.Ordinal) + "\n";
    }

    private static string? GetString(JsonObject obj, string key, string source)
    {
        var node = obj[key];
        if (node is null) return null;
        return node.GetValueKind() == JsonValueKind.String
            ? node.GetValue<string>()
            : throw new AdapterFormatException($"{source}: \"{key}\" must be a string, found {node.ToJsonString()}.");
    }

    private static int? GetInt(JsonObject obj, string key, string source)
    {
        var node = obj[key];
        return node is null ? null : ToInt(node, key, source);
    }

    private static int ToInt(JsonNode node, string key, string source)
    {
        double d = ToDouble(node, key, source);
        if (d != Math.Floor(d) || d < int.MinValue || d > int.MaxValue)
            throw new AdapterFormatException($"{source}: \"{key}\" must be an integer, found {node.ToJsonString()}.");
        return (int)d;
    }

    private static (List<string> Names, string? Regex) GetModuleSelection(JsonObject obj, string key, string source)
    {
        var names = new List<string>();
        switch (obj[key])
        {
            case null:
                return (names, null);
            case JsonArray array:
                foreach (var item in array)
                {
                    names.Add(item is not null && item.GetValueKind() == JsonValueKind.String
                        ? item.GetValue<string>()
                        : throw new AdapterFormatException($"{source}: \"{key}\" must hold strings, found {item?.ToJsonString() ?? "null"}."));
                }
                return (names, null);
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                return (names, value.GetValue<string>());
            case var other:
                throw new AdapterFormatException($"{source}: \"{key}\" must be a list of names or a regex string, found {other.ToJsonString()}.");
        }
    }

    private static double? GetDouble(JsonObject obj, string key, string source)
    {
        var node = obj[key];
        return node is null ? null : ToDouble(node, key, source);
    }

    private static double ToDouble(JsonNode node, string key, string source)
        => node.GetValueKind() == JsonValueKind.Number
            ? node.GetValue<double>()
            : throw new AdapterFormatException($"{source}: \"{key}\" must be a number, found {node.ToJsonString()}.");

    private static bool? GetBool(JsonObject obj, string key, string source)
    {
        var node = obj[key];
        if (node is null) return null;
        return node.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new AdapterFormatException($"{source}: \"{key}\" must be true or false, found {node.ToJsonString()}."),
        };
    }

    private static IReadOnlyDictionary<string, T> GetMap<T>(JsonObject obj, string key, string source, Func<JsonNode, T> convert)
    {
        var result = new Dictionary<string, T>(StringComparer.Ordinal);
        switch (obj[key])
        {
            case null:
                return result;
            case JsonObject map:
                foreach (var (name, value) in map)
                {
                    if (value is null) throw new AdapterFormatException($"{source}: \"{key}\".\"{name}\" is null.");
                    result[name] = convert(value);
                }
                return result;
            case var other:
                throw new AdapterFormatException($"{source}: \"{key}\" must be an object, found {other.ToJsonString()}.");
        }
    }

    internal static byte[] Utf8(string text) => new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text);
}
