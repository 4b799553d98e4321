using Peft.Serialization;

namespace Peft;

/// <summary>
/// HiRA (<see cref="HiRAAttribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "HIRA", tensors <c>hira_A</c>
/// <c>[r, in]</c> and <c>hira_B</c> <c>[out, r]</c> (no <c>.weight</c> suffix: PEFT keeps them in parameter dictionaries); config
/// fields <c>r</c>, <c>rank_pattern</c>, <c>hira_dropout</c>, <c>fan_in_fan_out</c>, <c>init_weights</c>,
/// <c>layers_to_transform</c>, <c>layers_pattern</c>.
/// </summary>
public sealed class HiRAMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static HiRAMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "hira_A", "hira_B" };

    private HiRAMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "HiRA";

    /// <inheritdoc />
    public override string PeftType => "HIRA";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(HiRAAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(HiRAOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>
    /// Reads r (with the module's <c>rank_pattern</c>) and <c>hira_dropout</c>. <c>init_weights</c> (true, false or
    /// "gaussian") only chose the initial values, so it does not change what the file's tensors compute.
    /// </summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed or out of range.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int r = config.Rank(modulePath, HiRARules.DefaultRank);
        double dropout = config.Probability("hira_dropout");
        return new HiRAOptions(r, dropout);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        double dropout = writer.Same("hira_dropout", o => ((HiRAOptions)o).Dropout);
        writer.WithPattern("r", "rank_pattern", o => ((HiRAOptions)o).Rank, v => v);
        writer.Fields["hira_dropout"] = dropout;
        writer.Fields["fan_in_fan_out"] = writer.FanInFanOut();
        writer.Fields["init_weights"] = true;
        writer.Fields["layers_to_transform"] = null;
        writer.Fields["layers_pattern"] = null;
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (HiRAOptions)fromFile;
        if (inModel is not HiRAOptions model)
        {
            yield return $"{path}: the model's adapter is not a HiRA adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
    }
}

/// <summary>Shorthands for adding a HiRA adapter to a layer.</summary>
public static class HiRALayerExtensions
{
    /// <summary>Adds a HiRA adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="HiRAOptions"/>).</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithHiRA<TLayer>(this TLayer layer, string adapterName, HiRAOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
