using System.Text.RegularExpressions;
using Peft.Serialization;

namespace Peft;

/// <summary>
/// Which layers get an adapter, chosen by configuration instead of attributes: Hugging Face PEFT's
/// <c>target_modules</c> / <c>exclude_modules</c> / <c>rank_pattern</c> / <c>alpha_pattern</c> with the method's
/// options. Apply it with <see cref="PeftTargeting.ApplyTargets"/>; read it from an <c>adapter_config.json</c> with
/// <see cref="FromAdapterConfig"/> or <see cref="Read"/>. See docs/targets.md.
/// </summary>
/// <example>
/// <code>
/// model.ApplyTargets(new PeftTargets(TargetModules.Names("q_proj", "k_proj", "v_proj", "o_proj"), new LoRAOptions(Rank: 16, Alpha: 32))
/// {
///     Exclude = TargetModules.Names("layers.0.self_attn.q_proj"),
///     AdapterName = "qkvo",
/// });
/// </code>
/// </example>
public sealed record PeftTargets
{
    /// <summary>Creates a configuration.</summary>
    /// <param name="targets">The modules to adapt (PEFT's <c>target_modules</c>).</param>
    /// <param name="options">The adapter's options, of any method (default: PEFT's LoRA defaults). The targets must be
    /// layers of a kind the method adapts: linear layers for LoRA, norms for LayerNorm tuning, the input embedding for
    /// prompt tuning.</param>
    public PeftTargets(TargetModules targets, PeftAdapterOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(targets);
        Targets = targets;
        Options = options ?? new LoRAOptions();
    }

    /// <summary>The modules to adapt (PEFT's <c>target_modules</c>).</summary>
    public TargetModules Targets { get; init; }

    /// <summary>Modules never adapted, even when <see cref="Targets"/> selects them (PEFT's <c>exclude_modules</c>), or null.
    /// <see cref="TargetModules.AllLinear"/> is not allowed here.</summary>
    public TargetModules? Exclude { get; init; }

    /// <summary>The adapter options for every targeted layer (before <see cref="RankPattern"/>/<see cref="AlphaPattern"/>).</summary>
    public PeftAdapterOptions Options { get; init; }

    /// <summary>The adapter name (PEFT's <c>adapter_name</c>), <c>"default"</c> unless set.</summary>
    public string AdapterName { get; init; } = AdapterNames.Default;

    /// <summary>PEFT's <c>rank_pattern</c>: per-module rank overrides. A key matches a module whose full name matches
    /// <c>(.*\.)?key</c> entirely; the first matching key in the dictionary's order wins, as in PEFT's
    /// <c>get_pattern_key</c> (put specific keys before general ones).</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();

    /// <summary>PEFT's <c>alpha_pattern</c>: per-module alpha overrides, matched like <see cref="RankPattern"/>.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = new Dictionary<string, double>();

    /// <summary>
    /// Set for configs read from an adapter file that is about to be loaded: a <c>target_modules</c> entry that matches no
    /// module is skipped as long as another entry matches, as PEFT does (lists such as <c>["q_proj", "query"]</c> are
    /// written for several architectures); the file's tensor keys are then checked strictly. Configurations written in
    /// code keep every unmatched entry an error.
    /// </summary>
    internal bool IgnoreUnmatchedEntries { get; init; }

    /// <summary>PEFT's <c>layers_to_transform</c>: when not empty, a module selected by name or by "all-linear" is
    /// adapted only when its layer index (the number after <see cref="LayersPattern"/>, e.g. <c>layers.3.</c>) is listed.
    /// A regex selection is not filtered, as in PEFT.</summary>
    public IReadOnlyList<int> LayersToTransform { get; init; } = Array.Empty<int>();

    /// <summary>PEFT's <c>layers_pattern</c>: the names of the module lists <see cref="LayersToTransform"/> indexes
    /// (e.g. <c>layers</c>, <c>h</c>); empty means any list.</summary>
    public IReadOnlyList<string> LayersPattern { get; init; } = Array.Empty<string>();

    /// <summary>The options for the module named <paramref name="fullName"/>: <see cref="Options"/> as the method adapts them to
    /// one module (<see cref="PeftAdapterOptions.ForModule"/>: LoRA and LoKr apply the matching <see cref="RankPattern"/> /
    /// <see cref="AlphaPattern"/> keys).</summary>
    /// <param name="fullName">A full dotted module name.</param>
    /// <returns>The options.</returns>
    public PeftAdapterOptions OptionsFor(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        return Options.ForModule(fullName, this);
    }

    /// <summary>The rank and alpha the patterns give <paramref name="fullName"/> (null where no key matches).</summary>
    /// <param name="fullName">A full dotted module name.</param>
    /// <returns>The pattern values.</returns>
    public (int? Rank, double? Alpha) PatternsFor(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        return (PatternValue(RankPattern, fullName, out _), PatternValue(AlphaPattern, fullName, out _));
    }

    /// <summary>PEFT's pattern lookup (<c>get_pattern_key</c>): the first key <c>k</c>, in the dictionary's order, for
    /// which <c>(.*\.)?k</c> matches the whole name.</summary>
    internal static T? PatternValue<T>(IReadOnlyDictionary<string, T> pattern, string fullName, out string? key)
        where T : struct
    {
        foreach (var (candidate, value) in pattern)
        {
            if (PatternKeyMatches(candidate, fullName))
            {
                key = candidate;
                return value;
            }
        }
        key = null;
        return null;
    }

    internal static bool PatternKeyMatches(string key, string fullName)
    {
        if (TargetModules.EntryMatches(key, fullName)) return true;
        try
        {
            return System.Text.RegularExpressions.Regex.IsMatch(fullName, "^(?:.*\\.)?(?:" + key + ")$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException)
        {
            return false; // not a valid regex: only the literal suffix match applies
        }
    }

    /// <summary>
    /// The targets of a PEFT <c>adapter_config.json</c> (read with <see cref="AdapterConfig"/>): <c>target_modules</c>,
    /// <c>exclude_modules</c>, <c>layers_to_transform</c>/<c>layers_pattern</c>, <c>rank_pattern</c>, <c>alpha_pattern</c>, and
    /// the options the config's method reads (<see cref="PeftMethod.ReadOptions"/>: LoRA's <c>r</c>, <c>lora_alpha</c>, ...).
    /// </summary>
    /// <param name="config">The config.</param>
    /// <param name="adapterName">The adapter name to create (default <c>"default"</c>).</param>
    /// <exception cref="PeftConfigurationException">The config's method has no target modules (prompt learning), the config
    /// has no <c>target_modules</c>, or uses a setting this library does not support.</exception>
    public static PeftTargets FromAdapterConfig(AdapterConfig config, string adapterName = AdapterNames.Default)
        => Create(config, adapterName);

    /// <summary>Like FromAdapterConfig, for an adapter about to be loaded: an unmatched list entry is skipped while another
    /// matches, as PEFT loads files.</summary>
    internal static PeftTargets ForLoading(AdapterConfig config, string adapterName)
        => Create(config, adapterName) with { IgnoreUnmatchedEntries = true };

    private static PeftTargets Create(AdapterConfig config, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrEmpty(adapterName);
        if (config.TargetModules.Count == 0 && config.TargetModulesRegex is null)
            throw new PeftConfigurationException($"{config.Source} has no \"target_modules\"; nothing to target.");
        PeftAdapterOptions options;
        try
        {
            var method = PeftMethods.ForConfig(config);
            if (method.IsPromptLearning)
                throw new PeftConfigurationException($"{config.Source}: peft_type \"{config.PeftType}\" cannot be applied by target_modules.");
            options = method.ReadOptions(config, null);
        }
        catch (AdapterFormatException ex)
        {
            throw new PeftConfigurationException($"{ex.Message} Nothing was changed.", ex);
        }

        // fan_in_fan_out: the tensors are the same; AdapterFiles.Load accepts the flag where the model declares
        // Conv1D layers (IFanInFanOutLayers) and refuses it elsewhere.
        var exclude = config.ExcludeModules.Count == 0 && config.ExcludeModulesRegex is null
            ? null
            : TargetModules.FromPeft(config.ExcludeModulesRegex, config.ExcludeModules);
        return new PeftTargets(TargetModules.FromPeft(config.TargetModulesRegex, config.TargetModules), options)
        {
            Exclude = exclude,
            AdapterName = adapterName,
            RankPattern = config.RankPattern,
            AlphaPattern = config.AlphaPattern,
            LayersToTransform = config.LayersToTransform,
            LayersPattern = config.LayersPattern,
        };
    }

    /// <summary>Reads <c>adapter_config.json</c> from an adapter directory (or the file itself) and calls <see cref="FromAdapterConfig"/>.</summary>
    /// <param name="path">An adapter directory or the path of its <c>adapter_config.json</c>.</param>
    /// <param name="adapterName">The adapter name to create.</param>
    /// <exception cref="FileNotFoundException">The config does not exist.</exception>
    /// <exception cref="AdapterFormatException">The config is malformed.</exception>
    /// <exception cref="PeftConfigurationException">See <see cref="FromAdapterConfig"/>.</exception>
    public static PeftTargets Read(string path, string adapterName = AdapterNames.Default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string file = Directory.Exists(path) ? Path.Combine(path, AdapterFiles.ConfigFileName) : path;
        return FromAdapterConfig(AdapterConfig.Read(file), adapterName);
    }
}
