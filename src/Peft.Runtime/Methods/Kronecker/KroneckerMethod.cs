using Peft.Serialization;

namespace Peft;

/// <summary>
/// LoKr (<see cref="KroneckerAttribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "LOKR", tensors <c>lokr_w1</c>
/// or <c>lokr_w1_a</c>/<c>lokr_w1_b</c>, and <c>lokr_w2</c> or <c>lokr_w2_a</c>/<c>lokr_w2_b</c>; config fields <c>r</c>,
/// <c>alpha</c>, <c>decompose_factor</c>, <c>decompose_both</c>, <c>rank_pattern</c>, <c>alpha_pattern</c>.
/// </summary>
public sealed class KroneckerMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static KroneckerMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b" };

    private KroneckerMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "Kronecker";

    /// <inheritdoc />
    public override string PeftType => "LOKR";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(KroneckerAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(KroneckerOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        // rank_dropout and module_dropout act only while training in PEFT; loaded weights compute the same update.
        int r = config.Rank(modulePath, 8);
        double alpha = config.Alpha(modulePath, "alpha", 8);
        int factor = config.GetInt("decompose_factor", -1);
        if (factor == 0 || factor < -1) throw new AdapterFormatException($"{config.Source}: \"decompose_factor\" must be -1 or a positive size, found {factor}.");
        return new KroneckerOptions(r, alpha, factor, config.GetBool("decompose_both", false));
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        int factor = writer.Same("decompose_factor", o => ((KroneckerOptions)o).Factor);
        bool both = writer.Same("decompose_both", o => ((KroneckerOptions)o).DecomposeBoth);
        writer.WithPattern("r", "rank_pattern", o => ((KroneckerOptions)o).Rank, v => v);
        writer.WithPattern("alpha", "alpha_pattern", o => ((KroneckerOptions)o).Alpha, v => v);
        writer.Fields["decompose_factor"] = factor;
        writer.Fields["decompose_both"] = both;
        writer.Fields["rank_dropout"] = 0.0;
        writer.Fields["module_dropout"] = 0.0;
        writer.Fields["rank_dropout_scale"] = false;
        writer.Fields["use_effective_conv2d"] = false;
        writer.Fields["init_weights"] = true;
        writer.Fields["layers_to_transform"] = null;
        writer.Fields["layers_pattern"] = null;
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (KroneckerOptions)fromFile;
        if (inModel is not KroneckerOptions model)
        {
            yield return $"{path}: the model's adapter is not a Kronecker adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
        if (file.Alpha != model.Alpha) yield return $"{path}: alpha is {file.Alpha} in the config, {model.Alpha} in the model";
    }
}

/// <summary>Shorthands for adding a Kronecker (LoKr) adapter to a layer.</summary>
public static class KroneckerLayerExtensions
{
    /// <summary>Adds a Kronecker adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="KroneckerOptions"/>).</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithKronecker<TLayer>(this TLayer layer, string adapterName, KroneckerOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
