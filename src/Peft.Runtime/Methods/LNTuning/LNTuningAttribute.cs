namespace Peft;

/// <summary>
/// Tunes a normalisation layer (Zhao et al., 2023, "Tuning LayerNorm in Attention: Towards Efficient Multi-Modal LLM
/// Finetuning"): a trainable copy of the norm's weight (and bias) replaces the frozen one while the adapter is active. The
/// copy starts equal to the base norm, so the adapted model starts equal to the base model.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.LayerNorm</c>
/// (with elementwise affine parameters) or a module implementing <see cref="IAdaptableNorm"/> (Llama's RMSNorm). Saved as
/// Hugging Face PEFT's <c>LNTuningConfig</c>: tensors <c>ln_tuning_layers.weight</c> (and <c>.bias</c>). Merging writes the
/// copy into the norm and keeps the original, so unmerging restores it bit for bit. One LN-tuning adapter can be active on a
/// norm at a time, as in PEFT.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class LNTuningAttribute : Attribute
{
    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
