using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// VeRA (<see cref="VeRAAttribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "VERA", per-module tensors
/// <c>vera_lambda_b</c> <c>[out]</c> and <c>vera_lambda_d</c> <c>[r]</c>, model-level tensors <c>base_model.vera_A</c>
/// <c>[r, in_max]</c> and <c>base_model.vera_B</c> <c>[out_max, r]</c> when <c>save_projection</c> is true; config fields
/// <c>r</c>, <c>projection_prng_key</c>, <c>save_projection</c>, <c>vera_dropout</c>, <c>d_initial</c>,
/// <c>fan_in_fan_out</c>, <c>bias</c>, <c>init_weights</c>, <c>layers_to_transform</c>, <c>layers_pattern</c>.
/// </summary>
/// <remarks>
/// The projections are PEFT's: a CPU generator seeded with <c>projection_prng_key</c> draws <c>vera_A</c> first, then
/// <c>vera_B</c>, each uniform in ±√(6 / fan_in) (kaiming-uniform with gain √2; fan_in = in_max for A, r for B), in float32.
/// A file without them (<c>save_projection</c> false) is loaded by regenerating them from the key, which reproduces PEFT's
/// values where libtorch's CPU generator does (PEFT makes no promise across platforms and versions).
/// </remarks>
public sealed class VeRAMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static VeRAMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "vera_lambda_b", "vera_lambda_d" };
    private static readonly string[] s_sharedNames = { VeRAAdapter.AName, VeRAAdapter.BName };

    private VeRAMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "VeRA";

    /// <inheritdoc />
    public override string PeftType => "VERA";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(VeRAAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(VeRAOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override IReadOnlyList<string> SharedTensorNames => s_sharedNames;

    /// <summary>False: PEFT's VeraConfig has no <c>exclude_modules</c> field.</summary>
    public override bool HasExcludeModules => false;

    /// <summary>
    /// PEFT's projections for rank <paramref name="rank"/> and the largest layer sizes: <c>vera_A</c> <c>[r, inMax]</c> then
    /// <c>vera_B</c> <c>[outMax, r]</c> from one CPU generator seeded with <paramref name="seed"/>, float32 (see the class
    /// remarks). The caller owns both.
    /// </summary>
    /// <param name="rank">r.</param>
    /// <param name="inMax">The largest in_features of the adapted layers.</param>
    /// <param name="outMax">The largest out_features of the adapted layers.</param>
    /// <param name="seed">PEFT's <c>projection_prng_key</c>.</param>
    /// <returns>vera_A and vera_B.</returns>
    public static (Tensor A, Tensor B) GenerateProjections(long rank, long inMax, long outMax, long seed)
    {
        using var generator = new Generator((ulong)seed, CPU);
        using var noGrad = no_grad();
        var a = empty(new[] { rank, inMax }, ScalarType.Float32, CPU);
        double boundA = VeRARules.KaimingBound(inMax);
        a.uniform_(-boundA, boundA, generator);
        var b = empty(new[] { outMax, rank }, ScalarType.Float32, CPU);
        double boundB = VeRARules.KaimingBound(rank);
        b.uniform_(-boundB, boundB, generator);
        return (a, b);
    }

    /// <summary>PEFT's projections sized by the largest in and out features of <paramref name="layers"/> (all of one rank and
    /// key, as PEFT requires), persistent when <c>save_projection</c> is true.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="layers">The adapter's layers.</param>
    /// <returns>The set (float32, CPU; each layer converts it to its own device and dtype once).</returns>
    /// <exception cref="PeftConfigurationException">The layers disagree on r, projection_prng_key or save_projection.</exception>
    public override SharedAdapterTensors CreateSharedTensors(string adapterName, IReadOnlyList<(PeftAdapterOptions Options, PeftLayerInfo Layer)> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0) throw new ArgumentException("No layers.", nameof(layers));
        var options = layers.Select(l => (VeRAOptions)l.Options).ToList();
        var first = options[0];
        var other = options.FirstOrDefault(o => o.Rank != first.Rank || o.ProjectionPrngKey != first.ProjectionPrngKey || o.SaveProjection != first.SaveProjection);
        if (other is not null)
        {
            throw new PeftConfigurationException(
                $"VeRA adapter '{adapterName}' has layers with different rank, ProjectionPrngKey or SaveProjection ({first} and {other}); its layers share one pair of projections, " +
                "so give them the same values (PEFT has one r and one projection_prng_key per adapter).", null, adapterName);
        }

        long inMax = layers.Max(l => l.Layer.InFeatures);
        long outMax = layers.Max(l => l.Layer.OutFeatures);
        var (a, b) = GenerateProjections(first.Rank, inMax, outMax, first.ProjectionPrngKey);
        return new SharedAdapterTensors(new[] { (VeRAAdapter.AName, a), (VeRAAdapter.BName, b) }, first.SaveProjection);
    }

    /// <summary>
    /// Reads <c>r</c>, <c>vera_dropout</c>, <c>d_initial</c>, <c>projection_prng_key</c> and <c>save_projection</c>.
    /// <c>init_weights</c> only chose the initial λ values; refused: <c>bias</c> other than "none".
    /// </summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed, out of range or unsupported.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int r = config.Rank(modulePath: null, 256); // one r for the shared projections: VeraConfig has no rank_pattern
        double dropout = config.Probability("vera_dropout");
        double dInitial = config.GetDouble("d_initial", 0.1);
        int key = config.GetInt("projection_prng_key", 0);
        bool save = config.GetBool("save_projection", true);
        string bias = config.GetString("bias") ?? "none";
        if (bias != "none") throw config.Unsupported("bias", "only \"none\" is (train the base biases with [Trainable] instead).");
        return new VeRAOptions(r, dropout, dInitial, key, save);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Fields["r"] = writer.Same("r", o => ((VeRAOptions)o).Rank);
        writer.Fields["projection_prng_key"] = writer.Same("projection_prng_key", o => ((VeRAOptions)o).ProjectionPrngKey);
        writer.Fields["save_projection"] = writer.Same("save_projection", o => ((VeRAOptions)o).SaveProjection);
        writer.Fields["vera_dropout"] = writer.Same("vera_dropout", o => ((VeRAOptions)o).Dropout);
        writer.Fields["d_initial"] = writer.Same("d_initial", o => ((VeRAOptions)o).DInitial);
        writer.Fields["fan_in_fan_out"] = writer.FanInFanOut();
        writer.Fields["bias"] = "none";
        writer.Fields["init_weights"] = true;
        writer.Fields["layers_to_transform"] = null;
        writer.Fields["layers_pattern"] = null;
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (VeRAOptions)fromFile;
        if (inModel is not VeRAOptions model)
        {
            yield return $"{path}: the model's adapter is not a VeRA adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
        if (file.ProjectionPrngKey != model.ProjectionPrngKey)
            yield return $"{path}: projection_prng_key is {file.ProjectionPrngKey} in the config, {model.ProjectionPrngKey} in the model";
        if (file.SaveProjection != model.SaveProjection)
            yield return $"{path}: save_projection is {file.SaveProjection} in the config, {model.SaveProjection} in the model";
    }
}

/// <summary>Shorthands for adding a VeRA adapter to a layer.</summary>
public static class VeRALayerExtensions
{
    /// <summary>Adds a VeRA adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="VeRAOptions"/>); its projections
    /// are bound by <see cref="PeftModel.BindSharedTensors"/> once the model is complete.</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithVeRA<TLayer>(this TLayer layer, string adapterName, VeRAOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
