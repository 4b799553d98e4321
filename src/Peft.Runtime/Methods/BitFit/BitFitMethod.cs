using Peft.Serialization;

namespace Peft;

/// <summary>
/// BitFit (<see cref="BitFitAttribute"/>): bias-only training. Hugging Face PEFT has no BitFit type (its nearest equivalent is
/// LoRA's <c>bias="all"</c>, which trains every bias beside LoRA and saves them under the model's own keys), so files use this
/// library's <c>peft_type</c> "BITFIT": one tensor per layer, <c>base_model.model.&lt;path&gt;.bitfit_bias</c>, holding the
/// trained bias itself (not a difference), and LNTuningConfig's field set (<c>target_modules</c>, <c>exclude_modules</c>,
/// <c>modules_to_save</c>). Not the model's own key <c>&lt;path&gt;.bias</c>: a module saved whole (<c>modules_to_save</c>, a
/// classification head) writes that key in the same file.
/// </summary>
public sealed class BitFitMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static BitFitMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { BitFitAdapter.BiasName };

    private BitFitMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "BitFit";

    /// <inheritdoc />
    public override string PeftType => "BITFIT";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear | PeftLayerKind.Norm;

    /// <inheritdoc />
    public override Type AttributeType => typeof(BitFitAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(BitFitOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new BitFitOptions();
    }

    /// <summary>BitFit has no fields beyond the targeting ones every config writes.</summary>
    /// <param name="writer">The adapter being saved.</param>
    public override void WriteConfig(AdapterConfigWriter writer) => ArgumentNullException.ThrowIfNull(writer);
}
