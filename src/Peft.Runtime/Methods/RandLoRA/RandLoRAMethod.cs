using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// RandLoRA (<see cref="RandLoRAAttribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "RANDLORA", per-module
/// tensors <c>randlora_lambda</c> <c>[r, n]</c> and <c>randlora_gamma</c> <c>[n, min]</c>, model-level tensors
/// <c>base_model.randlora_A</c> <c>[r, 1, min_max]</c> and <c>base_model.randlora_B</c> <c>[max_max, n_max, r]</c> when
/// <c>save_projection</c> is true; config fields <c>r</c>, <c>randlora_alpha</c>, <c>randlora_dropout</c>,
/// <c>projection_prng_key</c>, <c>save_projection</c>, <c>sparse</c>, <c>very_sparse</c>, <c>fan_in_fan_out</c>,
/// <c>bias</c>, <c>init_weights</c>, <c>layers_to_transform</c>, <c>layers_pattern</c> (RandLoraConfig has no
/// <c>exclude_modules</c>).
/// </summary>
/// <remarks>
/// The bases are PEFT's, drawn from one CPU generator seeded with <c>projection_prng_key</c>, with (out_max, in_max) the
/// largest sizes of the adapted layers, min_max and max_max their min and max, n_max = ⌈min_max / r⌉:
/// <list type="bullet">
/// <item>dense (PEFT's <c>_kaiming_init</c> on a machine without a bf16 GPU, i.e. in float16): <c>randlora_A</c> uniform in
/// ±1/√min_max, then n_max slices <c>[max_max, 1, r]</c> uniform in ±1/√r concatenated along dimension 1, each tensor then
/// divided by its own (unbiased) standard deviation, all in float16;</item>
/// <item>sparse / very_sparse: <c>torch.rand</c> for A then B in float32, entries below 1/(2k) become −1, above 1 − 1/(2k)
/// become +1, the rest 0, with k = 3 (sparse) or √min_max (very_sparse), then each divided by its standard deviation.</item>
/// </list>
/// PEFT draws the dense bases in bfloat16 on machines with a bf16 GPU, so a file written there without its bases
/// (<c>save_projection</c> false) regenerates other values, in PEFT as here; with the bases in the file (the default), the
/// file's values are used.
/// </remarks>
public sealed class RandLoRAMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static RandLoRAMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "randlora_lambda", "randlora_gamma" };
    private static readonly string[] s_sharedNames = { RandLoRAAdapter.AName, RandLoRAAdapter.BName };

    private RandLoRAMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "RandLoRA";

    /// <inheritdoc />
    public override string PeftType => "RANDLORA";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(RandLoRAAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(RandLoRAOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override IReadOnlyList<string> SharedTensorNames => s_sharedNames;

    /// <summary>False: PEFT's RandLoraConfig has no <c>exclude_modules</c> field.</summary>
    public override bool HasExcludeModules => false;

    /// <summary>
    /// PEFT's bases for rank <paramref name="rank"/> and the largest layer sizes (see the class remarks): <c>randlora_A</c>
    /// <c>[r, 1, min]</c> then <c>randlora_B</c> <c>[max, n, r]</c>, from one CPU generator seeded with <paramref name="seed"/>.
    /// The caller owns both.
    /// </summary>
    /// <param name="rank">r.</param>
    /// <param name="inMax">The largest in_features of the adapted layers.</param>
    /// <param name="outMax">The largest out_features of the adapted layers.</param>
    /// <param name="seed">PEFT's <c>projection_prng_key</c>.</param>
    /// <param name="basisKind">"dense", "sparse" or "very_sparse" (<see cref="RandLoRAOptions.BasisKind"/>).</param>
    /// <returns>randlora_A (float16 when dense, float32 when sparse) and randlora_B (same).</returns>
    public static (Tensor A, Tensor B) GenerateBases(long rank, long inMax, long outMax, long seed, string basisKind = "dense")
    {
        long min = Math.Min(inMax, outMax), max = Math.Max(inMax, outMax);
        long n = RandLoRARules.BaseCount(inMax, outMax, rank);
        using var generator = new Generator((ulong)seed, CPU);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        Tensor a, b;
        if (basisKind == "dense")
        {
            a = empty(new[] { rank, 1, min }, ScalarType.Float16, CPU);
            double boundA = RandLoRARules.KaimingBound(min);
            a.uniform_(-boundA, boundA, generator);
            var slices = new Tensor[n];
            double boundB = RandLoRARules.KaimingBound(rank);
            for (long j = 0; j < n; j++)
            {
                slices[j] = empty(new[] { max, 1, rank }, ScalarType.Float16, CPU);
                slices[j].uniform_(-boundB, boundB, generator);
            }

            b = cat(slices, 1);
        }
        else
        {
            double sparsity = basisKind == "very_sparse" ? Math.Sqrt(min) : 3;
            var uniformA = rand(new[] { rank, 1, min }, generator: generator);
            var uniformB = rand(new[] { max, n, rank }, generator: generator);
            a = Ternary(uniformA, sparsity);
            b = Ternary(uniformB, sparsity);
        }

        var normA = a / a.std();
        var normB = b / b.std();
        return (normA.MoveToOuterDisposeScope(), normB.MoveToOuterDisposeScope());
    }

    /// <summary>PEFT's ternary basis from uniform draws u: −1 where u &lt; 1/(2k), +1 where u &gt; 1 − 1/(2k), else 0 (float32).</summary>
    private static Tensor Ternary(Tensor uniform, double sparsity)
    {
        double low = 1 / (2 * sparsity), high = 1 - (1 / (2 * sparsity));
        var result = zeros(uniform.shape, ScalarType.Float32);
        using (var below = uniform.lt(low)) result.masked_fill_(below, -1);
        using (var above = uniform.gt(high)) result.masked_fill_(above, 1);
        return result;
    }

    /// <summary>PEFT's bases sized by the largest in and out features of <paramref name="layers"/> (all of one rank, key and
    /// basis kind, as PEFT requires), persistent when <c>save_projection</c> is true.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="layers">The adapter's layers.</param>
    /// <returns>The set (CPU; each layer converts it to its own device and dtype once).</returns>
    /// <exception cref="PeftConfigurationException">The layers disagree on r, projection_prng_key, save_projection, sparse or
    /// very_sparse.</exception>
    public override SharedAdapterTensors CreateSharedTensors(string adapterName, IReadOnlyList<(PeftAdapterOptions Options, PeftLayerInfo Layer)> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0) throw new ArgumentException("No layers.", nameof(layers));
        var options = layers.Select(l => (RandLoRAOptions)l.Options).ToList();
        var first = options[0];
        var other = options.FirstOrDefault(o => o.Rank != first.Rank || o.ProjectionPrngKey != first.ProjectionPrngKey || o.SaveProjection != first.SaveProjection || o.BasisKind != first.BasisKind);
        if (other is not null)
        {
            throw new PeftConfigurationException(
                $"RandLoRA adapter '{adapterName}' has layers with different rank, ProjectionPrngKey, SaveProjection, Sparse or VerySparse ({first} and {other}); its layers share one pair of bases, " +
                "so give them the same values (PEFT has one r, projection_prng_key and basis kind per adapter).", null, adapterName);
        }

        long inMax = layers.Max(l => l.Layer.InFeatures);
        long outMax = layers.Max(l => l.Layer.OutFeatures);
        var (a, b) = GenerateBases(first.Rank, inMax, outMax, first.ProjectionPrngKey, first.BasisKind);
        return new SharedAdapterTensors(new[] { (RandLoRAAdapter.AName, a), (RandLoRAAdapter.BName, b) }, first.SaveProjection);
    }

    /// <summary>
    /// Reads <c>r</c>, <c>randlora_alpha</c>, <c>randlora_dropout</c>, <c>projection_prng_key</c>, <c>save_projection</c>,
    /// <c>sparse</c> and <c>very_sparse</c>. <c>init_weights</c> only chose the initial values; refused: <c>bias</c> other
    /// than "none".
    /// </summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed, out of range or unsupported.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int r = config.Rank(modulePath: null, 32); // one r for the shared bases: RandLoraConfig has no rank_pattern
        double alpha = config.Alpha(modulePath: null, "randlora_alpha", 640);
        double dropout = config.Probability("randlora_dropout");
        int key = config.GetInt("projection_prng_key", 0);
        bool save = config.GetBool("save_projection", true);
        bool sparse = config.GetBool("sparse", false);
        bool verySparse = config.GetBool("very_sparse", false);
        string bias = config.GetString("bias") ?? "none";
        if (bias != "none") throw config.Unsupported("bias", "only \"none\" is (train the base biases with [Trainable] instead).");
        return new RandLoRAOptions(r, alpha, dropout, key, save, sparse, verySparse);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Fields["r"] = writer.Same("r", o => ((RandLoRAOptions)o).Rank);
        writer.Fields["randlora_alpha"] = writer.Same("randlora_alpha", o => ((RandLoRAOptions)o).Alpha);
        writer.Fields["randlora_dropout"] = writer.Same("randlora_dropout", o => ((RandLoRAOptions)o).Dropout);
        writer.Fields["projection_prng_key"] = writer.Same("projection_prng_key", o => ((RandLoRAOptions)o).ProjectionPrngKey);
        writer.Fields["save_projection"] = writer.Same("save_projection", o => ((RandLoRAOptions)o).SaveProjection);
        writer.Fields["sparse"] = writer.Same("sparse", o => ((RandLoRAOptions)o).Sparse);
        writer.Fields["very_sparse"] = writer.Same("very_sparse", o => ((RandLoRAOptions)o).VerySparse);
        writer.Fields["fan_in_fan_out"] = writer.FanInFanOut();
        writer.Fields["bias"] = "none";
        writer.Fields["init_weights"] = true;
        writer.Fields["layers_to_transform"] = null;
        writer.Fields["layers_pattern"] = null;
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (RandLoRAOptions)fromFile;
        if (inModel is not RandLoRAOptions model)
        {
            yield return $"{path}: the model's adapter is not a RandLoRA adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
        if (file.Alpha != model.Alpha) yield return $"{path}: randlora_alpha is {file.Alpha} in the config, {model.Alpha} in the model";
        if (file.ProjectionPrngKey != model.ProjectionPrngKey)
            yield return $"{path}: projection_prng_key is {file.ProjectionPrngKey} in the config, {model.ProjectionPrngKey} in the model";
        if (file.SaveProjection != model.SaveProjection)
            yield return $"{path}: save_projection is {file.SaveProjection} in the config, {model.SaveProjection} in the model";
        if (file.BasisKind != model.BasisKind)
            yield return $"{path}: the bases are {file.BasisKind} in the config (sparse, very_sparse), {model.BasisKind} in the model";
    }
}

/// <summary>Shorthands for adding a RandLoRA adapter to a layer.</summary>
public static class RandLoRALayerExtensions
{
    /// <summary>Adds a RandLoRA adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="RandLoRAOptions"/>); its bases
    /// are bound by <see cref="PeftModel.BindSharedTensors"/> once the model is complete.</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithRandLoRA<TLayer>(this TLayer layer, string adapterName, RandLoRAOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
