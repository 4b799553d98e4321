using System.Text.Json;
using Peft.Serialization;

namespace Peft;

/// <summary>
/// LoHa (<see cref="LoHaAttribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "LOHA", tensors <c>hada_w1_a</c>
/// <c>[out, r]</c>, <c>hada_w1_b</c> <c>[r, in]</c>, <c>hada_w2_a</c> <c>[out, r]</c>, <c>hada_w2_b</c> <c>[r, in]</c>; config
/// fields <c>r</c>, <c>alpha</c>, <c>rank_dropout</c>, <c>module_dropout</c>, <c>use_effective_conv2d</c>, <c>init_weights</c>,
/// <c>rank_pattern</c>, <c>alpha_pattern</c>, <c>layers_to_transform</c>, <c>layers_pattern</c>.
/// </summary>
public sealed class LoHaMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static LoHaMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b" };

    private LoHaMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "LoHa";

    /// <inheritdoc />
    public override string PeftType => "LOHA";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(LoHaAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(LoHaOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>
    /// Reads r and alpha (with the module's <c>rank_pattern</c>/<c>alpha_pattern</c>), <c>rank_dropout</c> and
    /// <c>module_dropout</c>. <c>init_weights</c> only chose the initial values, and <c>use_effective_conv2d</c> applies to
    /// convolutions only, so neither changes what a linear layer computes from the file's tensors. Refused: the settings of
    /// recent PEFT releases that change the update (<c>r2</c> different from <c>r</c>, and the ABBA form with scaling
    /// α²/√(r·r2) that <c>use_khatri_rao</c> true, or "auto" with <c>init_weights</c> "abba", selects).
    /// </summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed, out of range or unsupported.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int r = config.Rank(modulePath, 8);
        double alpha = config.Alpha(modulePath, "alpha", 8);
        double rankDropout = config.Probability("rank_dropout");
        double moduleDropout = config.Probability("module_dropout");
        if (config.Raw["r2"] is not null && config.GetInt("r2", r) != r)
            throw config.Unsupported("r2", "a second Hadamard factor with a rank other than r (ABBA) is not implemented.");
        if (AbbaScalingField(config) is { } abba)
            throw config.Unsupported(abba,
                "it selects PEFT's ABBA form, scaled by alpha²/√(r·r2) instead of alpha/r, which is not implemented (this library's forward already avoids forming the dense update).");
        return new LoHaOptions(r, alpha, rankDropout, moduleDropout);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        double rankDropout = writer.Same("rank_dropout", o => ((LoHaOptions)o).RankDropout);
        double moduleDropout = writer.Same("module_dropout", o => ((LoHaOptions)o).ModuleDropout);
        writer.WithPattern("r", "rank_pattern", o => ((LoHaOptions)o).Rank, v => v);
        writer.WithPattern("alpha", "alpha_pattern", o => ((LoHaOptions)o).Alpha, v => v);
        writer.Fields["rank_dropout"] = rankDropout;
        writer.Fields["module_dropout"] = moduleDropout;
        writer.Fields["use_effective_conv2d"] = false;
        writer.Fields["init_weights"] = true;
        writer.Fields["layers_to_transform"] = null;
        writer.Fields["layers_pattern"] = null;
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (LoHaOptions)fromFile;
        if (inModel is not LoHaOptions model)
        {
            yield return $"{path}: the model's adapter is not a LoHa adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
        if (file.Alpha != model.Alpha) yield return $"{path}: alpha is {file.Alpha} in the config, {model.Alpha} in the model";
    }

    /// <summary>The field that selects PEFT's ABBA scaling, or null: <c>use_khatri_rao</c> true, or "auto" (its default) with
    /// <c>init_weights</c> "abba".</summary>
    private static string? AbbaScalingField(AdapterConfig config)
    {
        var node = config.Raw["use_khatri_rao"];
        bool abbaInit = config.Raw["init_weights"] is { } init && init.GetValueKind() == JsonValueKind.String
            && string.Equals(init.GetValue<string>(), "abba", StringComparison.OrdinalIgnoreCase);
        return node?.GetValueKind() switch
        {
            null or JsonValueKind.Null => abbaInit ? "init_weights" : null,
            JsonValueKind.True => "use_khatri_rao",
            JsonValueKind.False => null,
            JsonValueKind.String when node.GetValue<string>() == "auto" => abbaInit ? "init_weights" : null,
            _ => throw config.Unsupported("use_khatri_rao", "it must be true, false or \"auto\"."),
        };
    }
}

/// <summary>Shorthands for adding a LoHa adapter to a layer.</summary>
public static class LoHaLayerExtensions
{
    /// <summary>Adds a LoHa adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="LoHaOptions"/>).</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithLoHa<TLayer>(this TLayer layer, string adapterName, LoHaOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
