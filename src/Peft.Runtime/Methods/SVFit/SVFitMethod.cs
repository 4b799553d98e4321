using Peft.Serialization;

namespace Peft;

/// <summary>
/// SVFit (<see cref="SVFitAttribute"/>) in this library's own file format, shaped like PEFT's (SVFit is not in PEFT):
/// <c>peft_type</c> "SVFIT", per-module tensors <c>svfit_sigma</c> <c>[r]</c>, <c>svfit_U</c> <c>[out, r]</c> and
/// <c>svfit_Vh</c> <c>[r, in]</c>; config fields <c>r</c> and <c>rank_pattern</c> (the rank each layer got, also when the
/// energy rule chose it, since the tensors' shapes depend on it) besides the common ones.
/// </summary>
/// <remarks>
/// The file belongs to the original base, as a PiSSA file does: a load that creates the adapter takes the SVD of the model's
/// weight (leaving the residual there) and then copies the file's σ, U and V, and the safetensors metadata's base fingerprints
/// (<see cref="BaseRewriteMetadata"/>) refuse a residual or foreign base, naming the module and the fix.
/// </remarks>
public sealed class SVFitMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static SVFitMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "svfit_sigma", "svfit_U", "svfit_Vh" };

    private SVFitMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "SVFit";

    /// <inheritdoc />
    public override string PeftType => "SVFIT";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(SVFitAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(SVFitOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>Reads <c>r</c> with the module's <c>rank_pattern</c> (positive: a file records the rank each layer got).</summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed or out of range.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new SVFitOptions(config.Rank(modulePath, 8));
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WithPattern("r", "rank_pattern", o => ((SVFitOptions)o).Rank, v => v);
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (SVFitOptions)fromFile;
        if (inModel is not SVFitOptions model)
        {
            yield return $"{path}: the model's adapter is not an SVFit adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
    }
}

/// <summary>Shorthands for adding an SVFit adapter to a layer.</summary>
public static class SVFitLayerExtensions
{
    /// <summary>Adds an SVFit adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="SVFitOptions"/>); the layer's base
    /// weight becomes the residual.</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithSVFit<TLayer>(this TLayer layer, string adapterName, SVFitOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
