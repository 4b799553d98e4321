namespace Peft;

/// <summary>
/// Trains the layer's bias only (BitFit: Ben Zaken et al., 2022, "BitFit: Simple Parameter-efficient Fine-tuning for
/// Transformer-based Masked Language-models"): the layer runs with a trainable copy of its bias, which starts equal to it, so
/// the adapted model starts equal to the base model and the weights stay frozen.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c> or a
/// <c>LayerNorm</c> (or an <see cref="IAdaptableNorm"/>) built with a bias; a layer without one is refused (PEFT0024). Hugging
/// Face PEFT has no BitFit type (its nearest is LoRA's <c>bias="all"</c>, which trains every bias beside LoRA): files use this
/// library's <c>peft_type</c> "BITFIT" with one tensor per layer, <c>bitfit_bias</c>, holding the trained bias itself.
/// Merging writes it into the layer's bias and keeps the original, so unmerging is exact.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class BitFitAttribute : Attribute
{
    /// <summary>The adapter name. Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
