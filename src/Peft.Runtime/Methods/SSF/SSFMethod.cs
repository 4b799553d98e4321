using Peft.Serialization;

namespace Peft;

/// <summary>
/// SSF (<see cref="SSFAttribute"/>): scale and shift features. Not in Hugging Face PEFT, so files use this library's
/// <c>peft_type</c> "SSF": two tensors per layer, <c>base_model.model.&lt;path&gt;.ssf_scale</c> and <c>.ssf_shift</c>
/// (the paper's code names them <c>ssf_scale_k</c>/<c>ssf_shift_k</c> per insertion point; here the point is the module path),
/// and LNTuningConfig's field set (<c>target_modules</c>, <c>exclude_modules</c>, <c>modules_to_save</c>).
/// </summary>
public sealed class SSFMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static SSFMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { SSFAdapter.ScaleName, SSFAdapter.ShiftName };

    private SSFMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "SSF";

    /// <inheritdoc />
    public override string PeftType => "SSF";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear | PeftLayerKind.Norm;

    /// <inheritdoc />
    public override Type AttributeType => typeof(SSFAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(SSFOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new SSFOptions();
    }

    /// <summary>SSF has no fields beyond the targeting ones every config writes.</summary>
    /// <param name="writer">The adapter being saved.</param>
    public override void WriteConfig(AdapterConfigWriter writer) => ArgumentNullException.ThrowIfNull(writer);
}
