namespace Peft;

/// <summary>
/// Scales and shifts the layer's output features (SSF: Lian et al., 2022, "Scaling &amp; Shifting Your Features: A New
/// Baseline for Efficient Model Tuning"): <c>y ← γ ⊙ y + β</c> on the last dimension, after a Linear layer's output or a
/// LayerNorm's. γ starts from N(1, 0.02²) and β from N(0, 0.02²), as the paper's code draws them, so the adapted model does
/// <b>not</b> start exactly equal to the base model (it is within a few hundredths of it).
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c> or a
/// <c>LayerNorm</c> (or an <see cref="IAdaptableNorm"/>). Merging folds it into the layer: <c>W' = diag(γ) W</c>,
/// <c>b' = γ ⊙ b + β</c> (a norm: <c>w' = γ ⊙ w</c>, <c>b' = γ ⊙ b + β</c>), which needs a bias to hold β: on a layer without
/// one the adapter works unmerged and merging is refused with the member's name (PEFT0025 warns at compile time). Not in
/// Hugging Face PEFT: files use this library's <c>peft_type</c> "SSF" with tensors <c>ssf_scale</c> and <c>ssf_shift</c>.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class SSFAttribute : Attribute
{
    /// <summary>The adapter name. Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
