using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// VB-LoRA (<see cref="VBLoRAAttribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "VBLORA", per-module tensors
/// <c>vblora_logits_A</c> <c>[r, in/L, N]</c> and <c>vblora_logits_B</c> <c>[out/L, r, N]</c>, the model-level trainable
/// bank <c>base_model.vblora_vector_bank</c> <c>[N, L]</c> (always saved); config fields <c>r</c>, <c>num_vectors</c>,
/// <c>vector_length</c>, <c>topk</c>, <c>save_only_topk_weights</c>, <c>vblora_dropout</c>, <c>fan_in_fan_out</c>,
/// <c>bias</c>, <c>init_vector_bank_bound</c>, <c>init_logits_std</c>, <c>exclude_modules</c>, <c>layers_to_transform</c>,
/// <c>layers_pattern</c>.
/// </summary>
/// <remarks>
/// PEFT's <c>save_only_topk_weights</c> files (top-k indices and the first k − 1 weights instead of the logits, for
/// inference only) are refused when read, naming the field: this library reads and writes the full logits.
/// </remarks>
public sealed class VBLoRAMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static VBLoRAMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "vblora_logits_A", "vblora_logits_B" };
    private static readonly string[] s_sharedNames = { VBLoRAAdapter.BankName };

    private VBLoRAMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "VBLoRA";

    /// <inheritdoc />
    public override string PeftType => "VBLORA";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(VBLoRAAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(VBLoRAOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override IReadOnlyList<string> SharedTensorNames => s_sharedNames;

    /// <summary>The bank trains.</summary>
    public override IReadOnlyList<string> TrainableSharedTensorNames => s_sharedNames;

    /// <summary>PEFT's bank for one adapter: <c>[N, L]</c> float32 uniform in ±<see cref="VBLoRAOptions.InitVectorBankBound"/>
    /// from the global generator (PEFT's <c>torch.nn.init.uniform_</c>), trainable and persistent; the layers must agree
    /// on N, L and the bound (PEFT has one per adapter).</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="layers">The adapter's layers.</param>
    /// <returns>The set (CPU float32; each layer converts it to its own device and dtype once).</returns>
    /// <exception cref="PeftConfigurationException">The layers disagree on NumVectors, VectorLength or InitVectorBankBound.</exception>
    public override SharedAdapterTensors CreateSharedTensors(string adapterName, IReadOnlyList<(PeftAdapterOptions Options, PeftLayerInfo Layer)> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0) throw new ArgumentException("No layers.", nameof(layers));
        var options = layers.Select(l => (VBLoRAOptions)l.Options).ToList();
        var first = options[0];
        var other = options.FirstOrDefault(o => o.NumVectors != first.NumVectors || o.VectorLength != first.VectorLength || o.InitVectorBankBound != first.InitVectorBankBound);
        if (other is not null)
        {
            throw new PeftConfigurationException(
                $"VB-LoRA adapter '{adapterName}' has layers with different NumVectors, VectorLength or InitVectorBankBound ({first} and {other}); its layers share one vector bank, " +
                "so give them the same values (PEFT has one num_vectors and vector_length per adapter).", null, adapterName);
        }

        using var noGrad = no_grad();
        var bank = zeros(new long[] { first.NumVectors, first.VectorLength }, ScalarType.Float32, CPU);
        bank.uniform_(-first.InitVectorBankBound, first.InitVectorBankBound);
        return new SharedAdapterTensors(new[] { (VBLoRAAdapter.BankName, bank) }, persistent: true, trainable: s_sharedNames);
    }

    /// <summary>
    /// Reads <c>r</c>, <c>num_vectors</c>, <c>vector_length</c>, <c>topk</c>, <c>vblora_dropout</c>,
    /// <c>init_vector_bank_bound</c> and <c>init_logits_std</c>. Refused: <c>save_only_topk_weights</c> true (the file has no
    /// logits) and <c>bias</c> other than "none".
    /// </summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed, out of range or unsupported.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int r = config.Rank(modulePath: null, 4); // VBLoRAConfig has no rank_pattern
        int numVectors = config.GetInt("num_vectors", 256);
        int vectorLength = config.GetInt("vector_length", 256);
        int topK = config.GetInt("topk", 2);
        double dropout = config.Probability("vblora_dropout");
        double bound = config.GetDouble("init_vector_bank_bound", 0.02);
        double std = config.GetDouble("init_logits_std", 0.1);
        if (numVectors <= 0) throw new AdapterFormatException($"{config.Source}: \"num_vectors\" must be a positive integer, found {numVectors}.");
        if (vectorLength <= 0) throw new AdapterFormatException($"{config.Source}: \"vector_length\" must be a positive integer, found {vectorLength}.");
        if (!VBLoRARules.TopKFits(topK, numVectors)) throw new AdapterFormatException($"{config.Source}: \"topk\" must be between 1 and num_vectors ({numVectors}), found {topK}.");
        if (config.GetBool("save_only_topk_weights", false))
        {
            throw config.Unsupported("save_only_topk_weights",
                "the file holds only the top-k indices and weights (PEFT's inference-only format), and this library reads the full logits; save the adapter with save_only_topk_weights false.");
        }

        string bias = config.GetString("bias") ?? "none";
        if (bias != "none") throw config.Unsupported("bias", "only \"none\" is (train the base biases with [Trainable] instead).");
        return new VBLoRAOptions(r, numVectors, vectorLength, topK, dropout, bound, std);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Fields["r"] = writer.Same("r", o => ((VBLoRAOptions)o).Rank);
        writer.Fields["num_vectors"] = writer.Same("num_vectors", o => ((VBLoRAOptions)o).NumVectors);
        writer.Fields["vector_length"] = writer.Same("vector_length", o => ((VBLoRAOptions)o).VectorLength);
        writer.Fields["topk"] = writer.Same("topk", o => ((VBLoRAOptions)o).TopK);
        writer.Fields["save_only_topk_weights"] = false;
        writer.Fields["vblora_dropout"] = writer.Same("vblora_dropout", o => ((VBLoRAOptions)o).Dropout);
        writer.Fields["fan_in_fan_out"] = writer.FanInFanOut();
        writer.Fields["bias"] = "none";
        writer.Fields["init_vector_bank_bound"] = writer.Same("init_vector_bank_bound", o => ((VBLoRAOptions)o).InitVectorBankBound);
        writer.Fields["init_logits_std"] = writer.Same("init_logits_std", o => ((VBLoRAOptions)o).InitLogitsStd);
        writer.Fields["layers_to_transform"] = null;
        writer.Fields["layers_pattern"] = null;
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (VBLoRAOptions)fromFile;
        if (inModel is not VBLoRAOptions model)
        {
            yield return $"{path}: the model's adapter is not a VB-LoRA adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
        if (file.NumVectors != model.NumVectors) yield return $"{path}: num_vectors is {file.NumVectors} in the config, {model.NumVectors} in the model";
        if (file.VectorLength != model.VectorLength) yield return $"{path}: vector_length is {file.VectorLength} in the config, {model.VectorLength} in the model";
        if (file.TopK != model.TopK) yield return $"{path}: topk is {file.TopK} in the config, {model.TopK} in the model";
    }
}

/// <summary>Shorthands for adding a VB-LoRA adapter to a layer.</summary>
public static class VBLoRALayerExtensions
{
    /// <summary>Adds a VB-LoRA adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="VBLoRAOptions"/>); its bank is
    /// bound by <see cref="PeftModel.BindSharedTensors"/> once the model is complete.</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithVBLoRA<TLayer>(this TLayer layer, string adapterName, VBLoRAOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
