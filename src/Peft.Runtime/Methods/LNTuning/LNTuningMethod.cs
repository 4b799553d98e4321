using Peft.Serialization;

namespace Peft;

/// <summary>
/// LayerNorm tuning (<see cref="LNTuningAttribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "LN_TUNING", tensors
/// <c>ln_tuning_layers.weight</c> (and <c>.bias</c>) per norm, config fields <c>target_modules</c>, <c>exclude_modules</c>,
/// <c>modules_to_save</c>.
/// </summary>
public sealed class LNTuningMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static LNTuningMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { LNTuningAdapter.WeightName, LNTuningAdapter.BiasName };

    private LNTuningMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "LNTuning";

    /// <inheritdoc />
    public override string PeftType => "LN_TUNING";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Norm;

    /// <inheritdoc />
    public override Type AttributeType => typeof(LNTuningAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(LNTuningOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new LNTuningOptions();
    }

    /// <summary>LNTuningConfig has no fields beyond the targeting ones every config writes.</summary>
    /// <param name="writer">The adapter being saved.</param>
    public override void WriteConfig(AdapterConfigWriter writer) => ArgumentNullException.ThrowIfNull(writer);
}
