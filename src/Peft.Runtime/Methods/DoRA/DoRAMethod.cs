using Peft.Serialization;

namespace Peft;

/// <summary>
/// DoRA (<see cref="DoRAAttribute"/>) in Hugging Face PEFT's format: a LoRA config (<c>peft_type</c> "LORA") with
/// <c>"use_dora": true</c>; tensors <c>lora_A.weight</c>, <c>lora_B.weight</c> and <c>lora_magnitude_vector</c> <c>[out]</c>
/// (PEFT strips the in-memory <c>.weight</c> of the magnitude on save). A variant of <see cref="LoRAMethod"/>: configs with
/// <c>use_dora</c> are read here.
/// </summary>
public sealed class DoRAMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static DoRAMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "lora_A.weight", "lora_B.weight", DoRAAdapter.MagnitudeName };

    private DoRAMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "DoRA";

    /// <inheritdoc />
    public override string PeftType => "LORA";

    /// <inheritdoc />
    public override PeftMethod? VariantOf => LoRAMethod.Instance;

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(DoRAAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(DoRAOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>A LORA config with <c>"use_dora": true</c>.</summary>
    /// <param name="config">The config.</param>
    /// <returns>True when DoRA reads it.</returns>
    public override bool Reads(AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.PeftType == PeftType && config.GetBool("use_dora", false);
    }

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        var lora = LoRAConfigFields.Read(config, modulePath);
        if (lora.RewritesBase)
            throw config.Unsupported("init_lora_weights", $"\"{LoRABaseInitialization.PeftName(lora.Init, lora.PissaIterations)}\" together with use_dora is not implemented (PiSSA and OLoRA are supported for plain LoRA).");
        return new DoRAOptions(lora.Rank, lora.Alpha, lora.Dropout, lora.UseRsLora, lora.Init);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer) => LoRAConfigFields.Write(writer, useDora: true);

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
        => LoRAConfigFields.Mismatches(path, ((DoRAOptions)fromFile).AsLoRA, (inModel as DoRAOptions)?.AsLoRA);
}
