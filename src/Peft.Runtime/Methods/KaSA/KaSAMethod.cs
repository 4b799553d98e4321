using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft;

/// <summary>
/// KaSA (<see cref="KaSAAttribute"/>) in Hugging Face PEFT's format (the LoRA variant added by huggingface/peft#3446, after
/// 0.20): a LoRA config (<c>peft_type</c> "LORA") with <c>"kasa_config": {"beta": β, "gamma": γ}</c>; tensors
/// <c>lora_A.weight</c>, <c>lora_B.weight</c> and <c>lora_diag</c> <c>[r]</c>. A variant of <see cref="LoRAMethod"/>: configs
/// with a <c>kasa_config</c> object are read here.
/// </summary>
/// <remarks>
/// A file belongs to the original base, as in PEFT (which re-applies the truncation when it loads the adapter onto the
/// original model): a load that creates the adapter truncates the model's weight and then copies the file's tensors, and the
/// safetensors metadata's base fingerprints (<see cref="BaseRewriteMetadata"/>) refuse an already truncated or foreign base.
/// </remarks>
public sealed class KaSAMethod : PeftMethod
{
    /// <summary>The config field that makes a LoraConfig KaSA.</summary>
    public const string ConfigField = "kasa_config";

    private static readonly string[] s_tensorNames = { "lora_A.weight", "lora_B.weight", KaSAAdapter.DiagName };

    private KaSAMethod()
    {
    }

    /// <summary>The registered instance.</summary>
    public static KaSAMethod Instance { get; } = new();

    /// <inheritdoc />
    public override string Name => "KaSA";

    /// <inheritdoc />
    public override string PeftType => "LORA";

    /// <inheritdoc />
    public override PeftMethod? VariantOf => LoRAMethod.Instance;

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(KaSAAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(KaSAOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>A LORA config whose <c>kasa_config</c> is present and not null.</summary>
    /// <param name="config">The config.</param>
    /// <returns>True when KaSA reads it.</returns>
    public override bool Reads(AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.PeftType == PeftType && config.Raw[ConfigField] is not null;
    }

    /// <summary>LoRA's fields (r, lora_alpha, lora_dropout, use_rslora with the patterns) and <c>kasa_config</c>'s beta and
    /// gamma (PEFT's defaults 1e-4 and 1e-3 when absent); use_dora and initialisations other than PEFT's default are refused.</summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">A module path, or null.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed, out of range or unsupported.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.GetBool("use_dora", false))
            throw config.Unsupported("use_dora", "DoRA and KaSA cannot be used together (PEFT refuses it too); remove use_dora or kasa_config.");
        var lora = LoRAConfigFields.Read(config, modulePath);
        if (lora.Init != LoRAInit.KaimingUniform)
        {
            throw config.Unsupported("init_lora_weights",
                "KaSA initialises A kaiming-uniform and B with zeros (init_lora_weights true); other initialisations together with kasa_config are not implemented.");
        }

        if (config.Raw[ConfigField] is not JsonObject kasa)
            throw new AdapterFormatException($"{config.Source}: \"{ConfigField}\" must be an object like {{\"beta\": 0.0001, \"gamma\": 0.001}}, found {config.Raw[ConfigField]!.ToJsonString()}.");
        double beta = Coefficient(config, kasa, "beta", KaSARules.DefaultBeta);
        double gamma = Coefficient(config, kasa, "gamma", KaSARules.DefaultGamma);
        return new KaSAOptions(lora.Rank, lora.Alpha, lora.Dropout, lora.UseRsLora, beta, gamma);
    }

    /// <summary>LoRA's LoraConfig fields with <c>use_dora</c> false and <c>kasa_config</c> {beta, gamma} (one value per adapter).</summary>
    /// <param name="writer">The adapter being saved.</param>
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        LoRAConfigFields.Write(writer, useDora: false);
        double beta = writer.Same("kasa_config.beta", o => ((KaSAOptions)o).Beta);
        double gamma = writer.Same("kasa_config.gamma", o => ((KaSAOptions)o).Gamma);
        writer.Fields[ConfigField] = new JsonObject { ["beta"] = beta, ["gamma"] = gamma };
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
        => LoRAConfigFields.Mismatches(path, ((KaSAOptions)fromFile).AsLoRA, (inModel as KaSAOptions)?.AsLoRA);

    private static double Coefficient(AdapterConfig config, JsonObject kasa, string key, double fallback)
    {
        var node = kasa[key];
        if (!kasa.ContainsKey(key)) return fallback;
        double value = node is JsonValue v && node.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : double.NaN;
        if (!KaSARules.IsValidCoefficient(value))
        {
            throw new AdapterFormatException(
                $"{config.Source}: {ConfigField}.{key} must be a finite number >= 0 (PEFT's default {fallback.ToString(CultureInfo.InvariantCulture)}), found {node?.ToJsonString() ?? "null"}.");
        }

        return value;
    }
}

/// <summary>Shorthands for adding a KaSA adapter to a layer.</summary>
public static class KaSALayerExtensions
{
    /// <summary>Adds a KaSA adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="KaSAOptions"/>); the layer's base
    /// weight loses its r smallest singular directions.</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithKaSA<TLayer>(this TLayer layer, string adapterName, KaSAOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
