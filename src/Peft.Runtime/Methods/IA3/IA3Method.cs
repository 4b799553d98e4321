using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft;

/// <summary>
/// (IA)³ (<see cref="IA3Attribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "IA3", one tensor <c>ia3_l</c> per layer
/// (<c>[out, 1]</c>, or <c>[1, in]</c> for feed-forward layers), config fields <c>target_modules</c>, <c>exclude_modules</c>,
/// <c>feedforward_modules</c>, <c>fan_in_fan_out</c>, <c>modules_to_save</c>, <c>init_ia3_weights</c>.
/// </summary>
public sealed class IA3Method : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static IA3Method Instance { get; } = new();

    private static readonly string[] s_tensorNames = { IA3Adapter.ScaleName };

    private IA3Method()
    {
    }

    /// <inheritdoc />
    public override string Name => "IA3";

    /// <inheritdoc />
    public override string PeftType => "IA3";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(IA3Attribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(IA3Options);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>
    /// PEFT's feed-forward test (<c>IA3Model._check_target_module_feedforward</c>): a regex string must match the whole name; a
    /// list entry matches a name that ends with it (a plain suffix, without a dot boundary, as PEFT checks it).
    /// </summary>
    /// <param name="modulePath">The module's full dotted name.</param>
    /// <param name="feedForwardModules">PEFT's <c>feedforward_modules</c>.</param>
    /// <returns>True when the module is feed-forward.</returns>
    public static bool IsFeedForward(string modulePath, TargetModules feedForwardModules)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        ArgumentNullException.ThrowIfNull(feedForwardModules);
        return feedForwardModules.Kind == TargetModulesKind.Regex
            ? feedForwardModules.IsMatch(modulePath)
            : feedForwardModules.Entries.Any(e => modulePath.EndsWith(e, StringComparison.Ordinal));
    }

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        TargetModules? feedForward;
        try
        {
            feedForward = config.GetModules("feedforward_modules");
        }
        catch (PeftConfigurationException ex)
        {
            throw new AdapterFormatException($"{config.Source}: \"feedforward_modules\" is not a valid module selection: {ex.Message}", ex);
        }

        if (feedForward is { Kind: TargetModulesKind.Names } && config.TargetModulesRegex is null && config.TargetModules.Count > 0)
        {
            var outside = feedForward.Entries.Where(e => !config.TargetModules.Contains(e, StringComparer.Ordinal)).ToList();
            if (outside.Count > 0)
            {
                throw new AdapterFormatException(
                    $"{config.Source}: \"feedforward_modules\" should be a subset of \"target_modules\" (PEFT refuses this config); {string.Join(", ", outside.Select(e => $"\"{e}\""))} are not targets.");
            }
        }

        bool init = config.GetBool("init_ia3_weights", true);
        return modulePath is null
            ? new IA3Options(false, init, feedForward)
            : new IA3Options(feedForward is not null && IsFeedForward(modulePath, feedForward), init);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var feedForward = writer.Layers.Where(l => ((IA3Options)l.Adapter.Config).FeedForward).Select(l => l.Path).ToList();
        writer.Fields["feedforward_modules"] = FeedForwardNames(writer, feedForward);
        writer.Fields["fan_in_fan_out"] = writer.FanInFanOut();
        writer.Fields["init_ia3_weights"] = writer.Same("init_ia3_weights", o => ((IA3Options)o).InitWeights);
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (IA3Options)fromFile;
        if (inModel is not IA3Options model)
        {
            yield return $"{path}: the model's adapter is not an IA3 adapter";
            yield break;
        }

        if (file.FeedForward != model.FeedForward)
        {
            yield return $"{path}: the config says it is {(file.FeedForward ? "" : "not ")}in feedforward_modules (scales its {(file.FeedForward ? "input" : "output")}), the model's adapter scales its {(model.FeedForward ? "input" : "output")}";
        }
    }

    /// <summary>
    /// The shortest names that PEFT's feed-forward rule (a plain suffix, unlike target_modules' dot boundary) reads as exactly
    /// the feed-forward layers among the adapted ones; a regex of the exact paths when names cannot. An empty list when there
    /// are none (PEFT refuses a null feedforward_modules for models it has no default for).
    /// </summary>
    private static JsonNode FeedForwardNames(AdapterConfigWriter writer, List<string> feedForward)
    {
        if (feedForward.Count == 0) return new JsonArray();
        var names = writer.ModuleNames(feedForward);
        var selection = names is JsonArray list
            ? TargetModules.Names(list.Select(n => n!.GetValue<string>()))
            : TargetModules.FromPeft(names.GetValue<string>(), Array.Empty<string>());
        bool exact = writer.Layers.All(l => IsFeedForward(l.Path, selection) == feedForward.Contains(l.Path, StringComparer.Ordinal));
        return exact
            ? names
            : JsonValue.Create(string.Join("|", feedForward.OrderBy(p => p, StringComparer.Ordinal).Select(System.Text.RegularExpressions.Regex.Escape)))!;
    }
}
