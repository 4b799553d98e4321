using Peft.Serialization;

namespace Peft;

/// <summary>
/// LoLDU (<see cref="LoLDUAttribute"/>) in this library's own file format, shaped like PEFT's (LoLDU is not in PEFT):
/// <c>peft_type</c> "LOLDU", per-module tensors <c>loldu_z</c> <c>[r]</c>, <c>loldu_scaling_factor</c> <c>[1]</c>,
/// <c>loldu_L</c> <c>[out, r]</c> (row-permuted) and <c>loldu_U</c> <c>[r, in]</c>; config fields <c>r</c>, <c>alpha</c>,
/// <c>rank_pattern</c> and <c>alpha_pattern</c> besides the common ones.
/// </summary>
/// <remarks>
/// The file belongs to the original base, as a PiSSA or SVFit file does: a load that creates the adapter takes the LU of the
/// model's weight (leaving the residual there) and then copies the file's tensors, and the safetensors metadata's base
/// fingerprints (<see cref="BaseRewriteMetadata"/>) refuse a residual or foreign base, naming the module and the fix.
/// </remarks>
public sealed class LoLDUMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static LoLDUMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "loldu_z", "loldu_scaling_factor", "loldu_L", "loldu_U" };

    private LoLDUMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "LoLDU";

    /// <inheritdoc />
    public override string PeftType => "LOLDU";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(LoLDUAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(LoLDUOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>Reads <c>r</c> and <c>alpha</c> with the module's <c>rank_pattern</c>/<c>alpha_pattern</c>.</summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed or out of range.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new LoLDUOptions(config.Rank(modulePath, 8), config.Alpha(modulePath, "alpha", 1.0));
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WithPattern("r", "rank_pattern", o => ((LoLDUOptions)o).Rank, v => v);
        writer.WithPattern("alpha", "alpha_pattern", o => ((LoLDUOptions)o).Alpha, v => v);
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (LoLDUOptions)fromFile;
        if (inModel is not LoLDUOptions model)
        {
            yield return $"{path}: the model's adapter is not a LoLDU adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
    }
}

/// <summary>Shorthands for adding a LoLDU adapter to a layer.</summary>
public static class LoLDULayerExtensions
{
    /// <summary>Adds a LoLDU adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="LoLDUOptions"/>); the layer's base
    /// weight becomes the residual.</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithLoLDU<TLayer>(this TLayer layer, string adapterName, LoLDUOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
