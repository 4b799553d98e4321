using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Peft.Serialization;

/// <summary>
/// A Hugging Face PEFT <c>adapter_config.json</c>: the fields every method shares (peft_type, targets, layers, modules to
/// save, patterns) as properties, and typed, checked access to any other field for the method that owns it
/// (<see cref="GetInt"/>, <see cref="GetDouble"/>, ...; LoRA reads <c>r</c> and <c>lora_alpha</c>, IA3 reads
/// <c>feedforward_modules</c>). Unknown keys are kept in <see cref="Raw"/> and otherwise ignored, so configs written by newer
/// PEFT versions still load. Every error names the file and the field.
/// </summary>
public sealed record AdapterConfig
{
    /// <summary>PEFT's <c>peft_type</c>: "LORA", "LOKR", "PROMPT_TUNING", ...</summary>
    public required string PeftType { get; init; }

    /// <summary>What names the config in messages (its path, or "adapter_config.json").</summary>
    public string Source { get; init; } = AdapterFiles.ConfigFileName;

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

    /// <summary><c>fan_in_fan_out</c>: the adapted base layers are stored [in, out] (Conv1D); see <see cref="IFanInFanOutLayers"/>.</summary>
    public bool FanInFanOut { get; init; }

    /// <summary><c>rank_pattern</c>: module name pattern to rank (the low-rank methods' per-module override).</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();

    /// <summary><c>alpha_pattern</c>: module name pattern to alpha.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = new Dictionary<string, double>();

    /// <summary>The whole JSON object as read (unknown keys included).</summary>
    public JsonObject Raw { get; init; } = new();

    /// <summary>Reads and validates a config file; errors name the file and the field.</summary>
    /// <param name="path">The path of <c>adapter_config.json</c>.</param>
    /// <returns>The config.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="AdapterFormatException">The file is not a valid config.</exception>
    public static AdapterConfig Read(string path)
    {
        var obj = AdapterConfigFile.Read(path);
        return FromJson(obj, path);
    }

    /// <summary>Interprets a parsed config object; <paramref name="source"/> names it in error messages.</summary>
    /// <param name="obj">The JSON object.</param>
    /// <param name="source">The file's path (or another name for messages).</param>
    /// <returns>The config.</returns>
    /// <exception cref="AdapterFormatException">A shared field is malformed.</exception>
    public static AdapterConfig FromJson(JsonObject obj, string source)
    {
        ArgumentNullException.ThrowIfNull(obj);
        string peftType = GetString(obj, "peft_type", source)
            ?? throw new AdapterFormatException($"{source}: \"peft_type\" is missing; PEFT configs always name their method (e.g. \"LORA\").");
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
            Source = source,
            TaskType = GetString(obj, "task_type", source),
            BaseModelNameOrPath = GetString(obj, "base_model_name_or_path", source),
            TargetModules = targets,
            TargetModulesRegex = regex,
            ExcludeModules = excluded,
            ExcludeModulesRegex = excludedRegex,
            LayersToTransform = layers,
            LayersPattern = layersPattern,
            ModulesToSave = modulesToSave,
            FanInFanOut = GetBool(obj, "fan_in_fan_out", source) ?? false,
            RankPattern = GetMap(obj, "rank_pattern", source, n => ToInt(n, "rank_pattern", source)),
            AlphaPattern = GetMap(obj, "alpha_pattern", source, n => ToDouble(n, "alpha_pattern", source)),
            Raw = obj,
        };
    }

    /// <summary>An integer field, or <paramref name="fallback"/> when the key is absent. A present <c>null</c> is an error
    /// (PEFT would fail on it later, or silently use another value).</summary>
    /// <param name="key">The field.</param>
    /// <param name="fallback">The value when absent (PEFT's default).</param>
    /// <returns>The value.</returns>
    /// <exception cref="AdapterFormatException">The field is null, not an integer, or out of range.</exception>
    public int GetInt(string key, int fallback) => Raw.ContainsKey(key) ? ToInt(Present(key), key, Source) : fallback;

    /// <summary>A number field (finite), or <paramref name="fallback"/> when the key is absent.</summary>
    /// <param name="key">The field.</param>
    /// <param name="fallback">The value when absent (PEFT's default).</param>
    /// <returns>The value.</returns>
    /// <exception cref="AdapterFormatException">The field is null, not a number, or not finite.</exception>
    public double GetDouble(string key, double fallback)
    {
        if (!Raw.ContainsKey(key)) return fallback;
        double value = ToDouble(Present(key), key, Source);
        return double.IsFinite(value)
            ? value
            : throw new AdapterFormatException($"{Source}: \"{key}\" must be a finite number, found {Raw[key]!.ToJsonString()}.");
    }

    /// <summary>A boolean field, or <paramref name="fallback"/> when the key is absent or null (PEFT writes null for unset flags).</summary>
    /// <param name="key">The field.</param>
    /// <param name="fallback">The value when absent.</param>
    /// <returns>The value.</returns>
    /// <exception cref="AdapterFormatException">The field is not true, false or null.</exception>
    public bool GetBool(string key, bool fallback) => GetBool(Raw, key, Source) ?? fallback;

    /// <summary>A string field, or null when absent or null.</summary>
    /// <param name="key">The field.</param>
    /// <returns>The value.</returns>
    /// <exception cref="AdapterFormatException">The field is not a string.</exception>
    public string? GetString(string key) => GetString(Raw, key, Source);

    /// <summary>A module selection field (a list of names or a regex string), or null when absent or null.</summary>
    /// <param name="key">The field (e.g. <c>feedforward_modules</c>).</param>
    /// <returns>The selection.</returns>
    /// <exception cref="AdapterFormatException">The field is malformed.</exception>
    public TargetModules? GetModules(string key)
    {
        if (Raw[key] is null) return null;
        var (names, regex) = GetModuleSelection(Raw, key, Source);
        return Peft.TargetModules.FromPeft(regex, names);
    }

    /// <summary>An <see cref="AdapterFormatException"/> for a setting this library does not support, naming the file and the field.</summary>
    /// <param name="key">The field.</param>
    /// <param name="what">What is not supported and what to do instead.</param>
    /// <returns>The exception to throw.</returns>
    public AdapterFormatException Unsupported(string key, string what)
        => new($"{Source}: {key} {Raw[key]?.ToJsonString() ?? "null"} is not supported: {what}");

    private JsonNode Present(string key)
        => Raw[key] ?? throw new AdapterFormatException($"{Source}: \"{key}\" is null; give it a value or leave it out for PEFT's default.");

    /// <summary>The rank for a module: the first <c>rank_pattern</c> key matching its name (PEFT's
    /// <c>get_pattern_key</c>: <c>(.*\.)?key$</c>, in the file's order), else <paramref name="fallback"/>.</summary>
    /// <param name="modulePath">The module path, or null for the adapter-wide value.</param>
    /// <param name="fallback">The config's <c>r</c>.</param>
    /// <returns>The rank.</returns>
    public int RankFor(string? modulePath, int fallback) => modulePath is null ? fallback : PeftTargets.PatternValue(RankPattern, modulePath, out _) ?? fallback;

    /// <summary>The alpha for a module: <c>alpha_pattern</c> matched like <see cref="RankFor"/>, else <paramref name="fallback"/>.</summary>
    /// <param name="modulePath">The module path, or null for the adapter-wide value.</param>
    /// <param name="fallback">The config's alpha.</param>
    /// <returns>The alpha.</returns>
    public double AlphaFor(string? modulePath, double fallback) => modulePath is null ? fallback : PeftTargets.PatternValue(AlphaPattern, modulePath, out _) ?? fallback;

    /// <summary>The largest alpha accepted from a file: no recipe uses more, and a larger value is a damaged file that would
    /// silently produce infinities.</summary>
    public const double MaxAlpha = 1e6;

    /// <summary>The rank for a module (<see cref="RankFor"/> over the file's <c>r</c>), checked positive: the one reading
    /// of <c>r</c> for every method.</summary>
    /// <param name="modulePath">The module path, or null for the adapter-wide value.</param>
    /// <param name="defaultRank">The method's default r (PEFT's config default).</param>
    /// <returns>The rank.</returns>
    /// <exception cref="AdapterFormatException">The rank is not positive.</exception>
    public int Rank(string? modulePath, int defaultRank)
    {
        int r = RankFor(modulePath, GetInt("r", defaultRank));
        return r > 0 ? r : throw new AdapterFormatException($"{Source}: \"r\"{For(modulePath)} must be a positive integer, found {r}.");
    }

    /// <summary>The alpha for a module (<see cref="AlphaFor"/> over the field <paramref name="key"/>), checked in
    /// <c>(0, </c><see cref="MaxAlpha"/><c>]</c>.</summary>
    /// <param name="modulePath">The module path, or null for the adapter-wide value.</param>
    /// <param name="key">The field: <c>lora_alpha</c>, or <c>alpha</c> for LyCORIS methods.</param>
    /// <param name="defaultAlpha">The method's default.</param>
    /// <returns>The alpha.</returns>
    /// <exception cref="AdapterFormatException">The alpha is out of range.</exception>
    public double Alpha(string? modulePath, string key, double defaultAlpha)
    {
        double alpha = AlphaFor(modulePath, GetDouble(key, defaultAlpha));
        return alpha > 0 && alpha <= MaxAlpha
            ? alpha
            : throw new AdapterFormatException($"{Source}: \"{key}\"{For(modulePath)} must be in (0, {MaxAlpha:G}], found {alpha:R}.");
    }

    /// <summary>A probability field (a dropout), default 0, checked in <c>[0, 1)</c>.</summary>
    /// <param name="key">The field.</param>
    /// <returns>The probability.</returns>
    /// <exception cref="AdapterFormatException">It is out of range.</exception>
    public double Probability(string key)
    {
        double value = GetDouble(key, 0);
        return value >= 0 && value < 1
            ? value
            : throw new AdapterFormatException($"{Source}: \"{key}\" must be in [0, 1), found {value:R}.");
    }

    private static string For(string? modulePath) => modulePath is null ? string.Empty : $" for '{modulePath}'";

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
    /// <param name="fields">The fields.</param>
    /// <returns>The JSON text with a final newline.</returns>
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
}
