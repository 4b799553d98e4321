using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// One adapter of a model on its way into <c>adapter_config.json</c>: the layers that carry it, the fields written so far,
/// and the helpers every method's <see cref="PeftMethod.WriteConfig"/> needs (one value per adapter, the most common value
/// plus per-module patterns, PEFT's module-name lists).
/// </summary>
public sealed class AdapterConfigWriter
{
    internal AdapterConfigWriter(nn.Module model, string adapterName, PeftMethod method, IReadOnlyList<(string Path, PeftAdapter Adapter)> layers, string? tokenizerNameOrPath)
    {
        Model = model;
        AdapterName = adapterName;
        Method = method;
        Layers = layers;
        TokenizerNameOrPath = tokenizerNameOrPath;
    }

    /// <summary>The model being saved.</summary>
    public nn.Module Model { get; }

    /// <summary>The adapter being saved.</summary>
    public string AdapterName { get; }

    /// <summary>Its method.</summary>
    public PeftMethod Method { get; }

    /// <summary>The layers that carry the adapter, with their module paths, in model order.</summary>
    public IReadOnlyList<(string Path, PeftAdapter Adapter)> Layers { get; }

    /// <summary>The tokenizer to record for prompt tuning initialised from a text (PEFT refuses TEXT init without one).</summary>
    public string? TokenizerNameOrPath { get; }

    /// <summary>The config fields (written sorted by <see cref="AdapterConfig.ToJson"/>).</summary>
    public Dictionary<string, JsonNode?> Fields { get; } = new(StringComparer.Ordinal);

    /// <summary>A setting PEFT stores once per adapter: every layer must agree.</summary>
    /// <typeparam name="T">The value type.</typeparam>
    /// <param name="field">The config field, for the message.</param>
    /// <param name="value">Reads the setting from a layer's options.</param>
    /// <returns>The common value.</returns>
    /// <exception cref="PeftConfigurationException">Layers disagree.</exception>
    public T Same<T>(string field, Func<PeftAdapterOptions, T> value)
    {
        ArgumentNullException.ThrowIfNull(value);
        T first = value(Layers[0].Adapter.Config);
        foreach (var (path, adapter) in Layers)
        {
            T other = value(adapter.Config);
            if (!EqualityComparer<T>.Default.Equals(first, other))
            {
                throw new PeftConfigurationException(
                    $"{Method.Name} adapter '{AdapterName}' has {field} {first} on '{Layers[0].Path}' but {other} on '{path}'; PEFT stores one {field} per adapter. " +
                    "Use one value on every layer, or save the layers as separate adapters (different names). Nothing was written.",
                    path, AdapterName);
            }
        }

        return first;
    }

    /// <summary>A setting PEFT stores as one value plus per-module overrides (<c>rank_pattern</c>, <c>alpha_pattern</c>): writes
    /// the most common value under <paramref name="field"/> and the others under <paramref name="patternField"/>.</summary>
    /// <typeparam name="T">The value type.</typeparam>
    /// <param name="field">The config field (e.g. <c>r</c>).</param>
    /// <param name="patternField">The pattern field (e.g. <c>rank_pattern</c>).</param>
    /// <param name="value">Reads the setting from a layer's options.</param>
    /// <param name="toJson">Converts a value to JSON.</param>
    /// <param name="common">The value to write under <paramref name="field"/> (the layers that differ from it go to the pattern);
    /// null for the most common value (EVA writes the declared rank, as PEFT does).</param>
    public void WithPattern<T>(string field, string patternField, Func<PeftAdapterOptions, T> value, Func<T, JsonNode?> toJson, T? common = null)
        where T : struct
    {
        ArgumentNullException.ThrowIfNull(value);
        ArgumentNullException.ThrowIfNull(toJson);
        var values = Layers.Select(l => (l.Path, Value: value(l.Adapter.Config))).ToList();
        T chosen = common ?? values.GroupBy(v => v.Value).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;
        WritePattern(field, patternField, values, chosen, toJson);
    }

    private void WritePattern<T>(string field, string patternField, List<(string Path, T Value)> values, T common, Func<T, JsonNode?> toJson)
    {
        Fields[field] = toJson(common);
        var pattern = new JsonObject();
        foreach (var (path, v) in values.Where(v => !EqualityComparer<T>.Default.Equals(v.Value, common)).OrderBy(v => v.Path, StringComparer.Ordinal))
        {
            pattern[path] = toJson(v);
        }

        Fields[patternField] = pattern;
    }

    /// <summary>
    /// The shortest names that select exactly <paramref name="paths"/> under PEFT's matching rule (a list entry matches a
    /// module whose name equals it or ends with "." + entry, whatever the module's type): the last path segment when every
    /// module with that name is in the set, else the full path. When even a full path would also select another module (a
    /// path that is a suffix of another one), the result is a regex string naming exactly the paths. Used for
    /// <c>target_modules</c> and for method fields such as IA3's <c>feedforward_modules</c>.
    /// </summary>
    /// <param name="paths">Module paths of the model.</param>
    /// <returns>A JSON list of names, or a regex string.</returns>
    public JsonNode ModuleNames(IEnumerable<string> paths)
    {
        var selected = new HashSet<string>(paths, StringComparer.Ordinal);
        var modulePaths = ModuleTree.Walk(Model).Where(n => n.Path.Length > 0).Select(n => n.Path).ToList();
        bool SelectsOnly(string name) => modulePaths
            .Where(p => p == name || p.EndsWith("." + name, StringComparison.Ordinal))
            .All(selected.Contains);

        var result = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var path in selected)
        {
            string shortName = path[(path.LastIndexOf('.') + 1)..];
            if (SelectsOnly(shortName)) result.Add(shortName);
            else if (SelectsOnly(path)) result.Add(path);
            else
            {
                var exact = selected.OrderBy(p => p, StringComparer.Ordinal).Select(System.Text.RegularExpressions.Regex.Escape);
                return JsonValue.Create(string.Join("|", exact))!;
            }
        }

        return new JsonArray(result.Select(t => (JsonNode?)t).ToArray());
    }

    /// <summary>
    /// PEFT's <c>fan_in_fan_out</c> for this adapter: true when its layers are stored [in, out] in the model's checkpoints
    /// (Conv1D, declared by <see cref="IFanInFanOutLayers"/>). It is one flag per adapter, so an adapter over both kinds is
    /// refused: a merge into the checkpoint could not orient both.
    /// </summary>
    /// <returns>The flag.</returns>
    /// <exception cref="PeftConfigurationException">The adapter covers both kinds of layers.</exception>
    public bool FanInFanOut()
    {
        if (Model is not IFanInFanOutLayers conv) return false;
        var conv1D = Layers.Where(l => conv.IsFanInFanOut(l.Path)).Select(l => l.Path).ToList();
        var linear = Layers.Where(l => !conv.IsFanInFanOut(l.Path)).Select(l => l.Path).ToList();
        if (conv1D.Count > 0 && linear.Count > 0)
            throw new PeftConfigurationException(
                $"{Method.Name} adapter '{AdapterName}' covers layers stored [in, out] in checkpoints (Conv1D: {string.Join(", ", conv1D.Take(3))}{(conv1D.Count > 3 ? ", ..." : "")}) and [out, in] ones ({string.Join(", ", linear.Take(3))}{(linear.Count > 3 ? ", ..." : "")}); " +
                "PEFT's fan_in_fan_out is one flag per adapter, so a merge into the checkpoint could not orient both. Put them in two adapters (different names). Nothing was written.",
                linear[0], AdapterName);
        return conv1D.Count > 0;
    }
}
