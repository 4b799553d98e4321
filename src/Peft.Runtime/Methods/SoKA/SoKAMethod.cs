using Peft.Serialization;

namespace Peft;

/// <summary>
/// SoKA (<see cref="SoKAAttribute"/>) in this library's own file format, shaped like PEFT's (SoKA is not in PEFT, and its sum of
/// r Kronecker products has no place in LoKr's single <c>lokr_w1 ⊗ lokr_w2</c>): <c>peft_type</c> "SOKA", per-module tensors
/// <c>soka_w1</c> <c>[r, m, n]</c> and <c>soka_w2</c> <c>[r, p, q]</c>; config fields <c>r</c> and <c>rank_pattern</c> (the rank
/// each layer got, also when chosen automatically, since the tensors' shapes depend on it) and LoKr's <c>decompose_factor</c>
/// besides the common ones.
/// </summary>
/// <remarks>
/// The file belongs to the original base, as a PiSSA file does: a load that creates the adapter takes the Kronecker SVD of the
/// model's weight (leaving the residual there) and then copies the file's factors, and the safetensors metadata's base
/// fingerprints (<see cref="BaseRewriteMetadata"/>) refuse a residual or foreign base, naming the module and the fix.
/// </remarks>
public sealed class SoKAMethod : PeftMethod
{
    private static readonly string[] s_tensorNames = { "soka_w1", "soka_w2" };

    private SoKAMethod()
    {
    }

    /// <summary>The registered instance.</summary>
    public static SoKAMethod Instance { get; } = new();

    /// <inheritdoc />
    public override string Name => "SoKA";

    /// <inheritdoc />
    public override string PeftType => "SOKA";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(SoKAAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(SoKAOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>Reads <c>r</c> with the module's <c>rank_pattern</c> (positive: a file records the rank each layer got) and
    /// <c>decompose_factor</c> (-1 when absent).</summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed or out of range.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int factor = config.GetInt("decompose_factor", -1);
        if (factor == 0)
            throw config.Unsupported("decompose_factor", "it must be -1 (automatic) or a positive first factor of in_features and out_features.");
        return new SoKAOptions(config.Rank(modulePath, 8), factor);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WithPattern("r", "rank_pattern", o => ((SoKAOptions)o).Rank, v => v);
        writer.Fields["decompose_factor"] = writer.Same("decompose_factor", o => ((SoKAOptions)o).Factor);
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (SoKAOptions)fromFile;
        if (inModel is not SoKAOptions model)
        {
            yield return $"{path}: the model's adapter is not a SoKA adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
        if (file.Factor != model.Factor) yield return $"{path}: decompose_factor is {file.Factor} in the config, {model.Factor} in the model";
    }
}

/// <summary>Shorthands for adding a SoKA adapter to a layer.</summary>
public static class SoKALayerExtensions
{
    /// <summary>Adds a SoKA adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="SoKAOptions"/>); the layer's base
    /// weight becomes the residual of its top Kronecker components.</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithSoKA<TLayer>(this TLayer layer, string adapterName, SoKAOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
