using System.Text.RegularExpressions;

namespace Peft;

/// <summary>How <see cref="TargetModules"/> selects modules.</summary>
public enum TargetModulesKind
{
    /// <summary>A list of names: a module matches when its full dotted name equals an entry or ends with "." + entry.</summary>
    Names = 0,

    /// <summary>A regular expression that must match the whole full dotted name.</summary>
    Regex = 1,

    /// <summary>PEFT's <c>"all-linear"</c>: every linear layer except the output head (see <see cref="TargetModules.AllLinear"/>).</summary>
    AllLinear = 2,
}

/// <summary>
/// A selection of modules by full dotted name (e.g. <c>model.layers.0.self_attn.q_proj</c>), with Hugging Face PEFT's
/// semantics for <c>target_modules</c> and <c>exclude_modules</c>: a list of names (suffix match at a dot), a regular
/// expression string (full match), or <c>"all-linear"</c>.
/// </summary>
public sealed class TargetModules
{
    /// <summary>PEFT's special <c>target_modules</c> value.</summary>
    public const string AllLinearValue = "all-linear";

    private readonly Regex? _regex;

    private TargetModules(TargetModulesKind kind, IReadOnlyList<string> names, string? pattern)
    {
        Kind = kind;
        Entries = names;
        Pattern = pattern;
        if (pattern is not null)
        {
            try
            {
                _regex = new Regex("^(?:" + pattern + ")$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            }
            catch (ArgumentException ex)
            {
                throw new PeftConfigurationException($"target/exclude modules regex '{pattern}' is not a valid regular expression: {ex.Message}", ex);
            }
        }
    }

    /// <summary>
    /// PEFT's <c>"all-linear"</c>: every linear layer (<c>TorchSharp.Modules.Linear</c> or <see cref="AdaptedLinear"/>)
    /// of the model except the output head, i.e. a linear child of the root module registered as <c>lm_head</c>,
    /// <c>classifier</c> or <c>score</c> (PEFT excludes the output embedding of a causal LM and the classification head
    /// of a sequence classifier), and except members marked <see cref="TrainableAttribute"/> (fully trained, PEFT's
    /// <c>modules_to_save</c>) or <see cref="FreezeAttribute"/>. A linear layer it covers that the generated code cannot
    /// reach (not a member of an <see cref="IPeftTargetable"/> class) is an error, not a silent skip.
    /// </summary>
    public static TargetModules AllLinear { get; } = new(TargetModulesKind.AllLinear, Array.Empty<string>(), null);

    /// <summary>The root-level module names <see cref="AllLinear"/> treats as the output head.</summary>
    public static IReadOnlyList<string> OutputHeadNames { get; } = new[] { "lm_head", "classifier", "score" };

    /// <summary>Selects modules whose full name equals one of <paramref name="names"/> or ends with "." + one of them.</summary>
    /// <param name="names">Module names or dotted name suffixes (e.g. <c>q_proj</c>, <c>self_attn.q_proj</c>).</param>
    /// <exception cref="PeftConfigurationException">No names, or an empty name.</exception>
    public static TargetModules Names(params string[] names)
    {
        ArgumentNullException.ThrowIfNull(names);
        return Names((IEnumerable<string>)names);
    }

    /// <summary>Selects modules whose full name equals one of <paramref name="names"/> or ends with "." + one of them.</summary>
    /// <param name="names">Module names or dotted name suffixes.</param>
    /// <exception cref="PeftConfigurationException">No names, or an empty name.</exception>
    public static TargetModules Names(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var list = names.Distinct(StringComparer.Ordinal).ToArray();
        if (list.Length == 0) throw new PeftConfigurationException("target_modules is empty: name at least one module (e.g. \"q_proj\"), or use \"all-linear\".");
        foreach (var name in list)
        {
            if (string.IsNullOrWhiteSpace(name)) throw new PeftConfigurationException("target_modules holds an empty name.");
        }
        return new TargetModules(TargetModulesKind.Names, list, null);
    }

    /// <summary>Selects modules whose full dotted name matches <paramref name="pattern"/> entirely (PEFT's regex string).</summary>
    /// <param name="pattern">A .NET regular expression (PEFT's Python patterns such as <c>.*\.(q|v)_proj</c> read the same).</param>
    /// <exception cref="PeftConfigurationException">The pattern is not a valid regular expression.</exception>
    public static TargetModules Regex(string pattern)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        return new TargetModules(TargetModulesKind.Regex, Array.Empty<string>(), pattern);
    }

    /// <summary>
    /// PEFT's JSON forms: <c>"all-linear"</c> (any case, as PEFT compares it), another string (a regex), or a list of
    /// names.
    /// </summary>
    /// <param name="regexOrAllLinear">The string form, or null when the list form is used.</param>
    /// <param name="names">The list form.</param>
    public static TargetModules FromPeft(string? regexOrAllLinear, IReadOnlyList<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        if (regexOrAllLinear is not null)
        {
            return string.Equals(regexOrAllLinear, AllLinearValue, StringComparison.OrdinalIgnoreCase) ? AllLinear : Regex(regexOrAllLinear);
        }
        if (names.Count == 1 && string.Equals(names[0], AllLinearValue, StringComparison.OrdinalIgnoreCase)) return AllLinear;
        return Names(names);
    }

    /// <summary>How this selection matches.</summary>
    public TargetModulesKind Kind { get; }

    /// <summary>The names for <see cref="TargetModulesKind.Names"/>; empty otherwise.</summary>
    public IReadOnlyList<string> Entries { get; }

    /// <summary>The regular expression for <see cref="TargetModulesKind.Regex"/>; null otherwise.</summary>
    public string? Pattern { get; }

    /// <summary>Whether list entry <paramref name="entry"/> selects the module named <paramref name="fullName"/> (equal, or a suffix after a dot).</summary>
    /// <param name="entry">A list entry.</param>
    /// <param name="fullName">A full dotted module name.</param>
    public static bool EntryMatches(string entry, string fullName)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(fullName);
        return fullName.Length >= entry.Length
            && fullName.EndsWith(entry, StringComparison.Ordinal)
            && (fullName.Length == entry.Length || fullName[fullName.Length - entry.Length - 1] == '.');
    }

    /// <summary>
    /// PEFT's <c>layers_to_transform</c> test: whether the layer index of <paramref name="fullName"/> (the last number
    /// after one of <paramref name="layersPattern"/> followed by a dot, any module list when the pattern is empty) is in
    /// <paramref name="layersToTransform"/>. True when <paramref name="layersToTransform"/> is empty; false when the name
    /// has no such index.
    /// </summary>
    /// <param name="fullName">A full dotted module name.</param>
    /// <param name="layersToTransform">The allowed indexes; empty allows every module.</param>
    /// <param name="layersPattern">Names of the module lists (<c>layers</c>, <c>h</c>, ...); empty means any.</param>
    public static bool InLayers(string fullName, IReadOnlyList<int> layersToTransform, IReadOnlyList<string> layersPattern)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        ArgumentNullException.ThrowIfNull(layersToTransform);
        ArgumentNullException.ThrowIfNull(layersPattern);
        if (layersToTransform.Count == 0) return true;

        // PEFT's regex needs a segment before the list (".*\.layers\.N\."); a list at the model's root ("layers.N.")
        // is accepted too, since PEFT's own names always carry the model prefix. The greedy prefix makes the last
        // index win, as in PEFT.
        var patterns = layersPattern.Count > 0 ? layersPattern : new[] { "[^.]*" };
        foreach (var pattern in patterns)
        {
            var match = System.Text.RegularExpressions.Regex.Match(fullName, "^(?:.*\\.)?" + pattern + "\\.(\\d+)\\.");
            if (match.Success)
            {
                return int.TryParse(match.Groups[1].Value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index)
                    && layersToTransform.Contains(index);
            }
        }
        return false;
    }

    /// <summary>
    /// Whether the module named <paramref name="fullName"/> is selected by a list entry or the regex. For
    /// <see cref="TargetModulesKind.AllLinear"/> this says nothing (it depends on the layer kind): it returns false.
    /// </summary>
    /// <param name="fullName">A full dotted module name.</param>
    public bool IsMatch(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        return Kind switch
        {
            TargetModulesKind.Names => Entries.Any(e => EntryMatches(e, fullName)),
            TargetModulesKind.Regex => _regex!.IsMatch(fullName),
            _ => false,
        };
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        TargetModulesKind.Names => "[" + string.Join(", ", Entries.Select(e => "\"" + e + "\"")) + "]",
        TargetModulesKind.Regex => "regex \"" + Pattern + "\"",
        _ => "\"" + AllLinearValue + "\"",
    };
}
