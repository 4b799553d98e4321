using System.Text.Json;
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
    /// <param name="options">The adapter's options: <see cref="LoRAOptions"/> (default: PEFT's LoRA defaults) or <see cref="KroneckerOptions"/>.</param>
    /// <exception cref="PeftConfigurationException">The options are prompt-tuning options (prompt tuning adapts an embedding, not linear layers).</exception>
    public PeftTargets(TargetModules targets, PeftAdapterOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(targets);
        Targets = targets;
        Options = options ?? new LoRAOptions();
        if (Options is not (LoRAOptions or KroneckerOptions))
            throw new PeftConfigurationException($"Configuration targeting adds LoRA or Kronecker adapters to linear layers; {Options.Method} is not supported (use [PromptTune] on the embedding member).");
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

    /// <summary>The options for the module named <paramref name="fullName"/>: <see cref="Options"/> with the rank and alpha
    /// of the matching <see cref="RankPattern"/> / <see cref="AlphaPattern"/> keys.</summary>
    /// <param name="fullName">A full dotted module name.</param>
    public PeftAdapterOptions OptionsFor(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        int? rank = PatternValue(RankPattern, fullName, out _);
        double? alpha = PatternValue(AlphaPattern, fullName, out _);
        return Options switch
        {
            LoRAOptions lora => lora with { Rank = rank ?? lora.Rank, Alpha = alpha ?? lora.Alpha },
            KroneckerOptions kron => kron with { Rank = rank ?? kron.Rank, Alpha = alpha ?? kron.Alpha },
            var other => other,
        };
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
    /// <c>exclude_modules</c>, <c>r</c>, <c>lora_alpha</c>/<c>alpha</c>, <c>lora_dropout</c>, <c>use_rslora</c>,
    /// <c>init_lora_weights</c>, <c>rank_pattern</c>, <c>alpha_pattern</c>, LoKr's <c>decompose_factor</c>/<c>decompose_both</c>.
    /// </summary>
    /// <param name="config">The config.</param>
    /// <param name="adapterName">The adapter name to create (default <c>"default"</c>).</param>
    /// <param name="source">Names the config in messages (e.g. its path).</param>
    /// <exception cref="PeftConfigurationException">The config names another method than LoRA/LoKr, has no
    /// <c>target_modules</c>, or uses a setting configuration targeting does not support (DoRA, <c>lora_bias</c>,
    /// <c>bias</c> other than "none", <c>init_lora_weights</c> other than true or "gaussian").</exception>
    public static PeftTargets FromAdapterConfig(AdapterConfig config, string adapterName = AdapterNames.Default, string? source = null)
        => Create(config, adapterName, source, ignoreInit: false);

    /// <summary>Like FromAdapterConfig, without checking <c>init_lora_weights</c>: for an adapter about to be loaded,
    /// whose weights come from the file.</summary>
    internal static PeftTargets ForLoading(AdapterConfig config, string adapterName, string source)
        => Create(config, adapterName, source, ignoreInit: true) with { IgnoreUnmatchedEntries = true };

    private static PeftTargets Create(AdapterConfig config, string adapterName, string? source, bool ignoreInit)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrEmpty(adapterName);
        string where = source ?? "adapter_config.json";
        void Unsupported(string what) => throw new PeftConfigurationException($"{where}: {what} is not supported by configuration targeting; nothing was changed.");

        if (config.TargetModules.Count == 0 && config.TargetModulesRegex is null)
            throw new PeftConfigurationException($"{where} has no \"target_modules\"; nothing to target.");
        if (config.UseDora) Unsupported("\"use_dora\": true (DoRA)");
        if (config.LoraBias) Unsupported("\"lora_bias\": true");
        // fan_in_fan_out: the tensors are the same; AdapterFiles.Load accepts the flag where the model declares
        // Conv1D layers (IFanInFanOutLayers) and refuses it elsewhere.
        if (config.Bias != "none") Unsupported($"\"bias\": \"{config.Bias}\"");

        PeftAdapterOptions options = config.PeftType switch
        {
            "LORA" => new LoRAOptions(config.R, config.Alpha, config.Dropout, config.UseRsLora, ignoreInit ? LoRAInit.KaimingUniform : InitOf(config, where)),
            "LOKR" => new KroneckerOptions(config.R, config.Alpha, config.DecomposeFactor, config.DecomposeBoth),
            var other => throw new PeftConfigurationException($"{where}: peft_type \"{other}\" cannot be applied by target_modules; LORA and LOKR can."),
        };

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
        return FromAdapterConfig(AdapterConfig.Read(file), adapterName, file);
    }

    private static LoRAInit InitOf(AdapterConfig config, string where)
    {
        var node = config.Raw["init_lora_weights"];
        if (node is null) return LoRAInit.KaimingUniform;
        return node.GetValueKind() switch
        {
            JsonValueKind.True => LoRAInit.KaimingUniform,
            JsonValueKind.String when node.GetValue<string>() == "gaussian" => LoRAInit.Gaussian,
            _ => throw new PeftConfigurationException(
                $"{where}: \"init_lora_weights\": {node.ToJsonString()} is not supported by configuration targeting (true or \"gaussian\" are); nothing was changed."),
        };
    }
}
