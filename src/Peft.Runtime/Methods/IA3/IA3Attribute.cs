namespace Peft;

/// <summary>
/// Adds an (IA)³ adapter (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
/// Learning") to a linear layer: a learned vector <c>l</c> rescales the layer's output, <c>y = (W x + b) ⊙ l</c>, or, for a
/// feed-forward layer (<see cref="FeedForward"/>), its input, <c>y = W (x ⊙ l) + b</c>. <c>l</c> starts at ones, so the
/// adapted layer equals the base layer.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// Saved as Hugging Face PEFT's <c>IA3Config</c>: one tensor <c>ia3_l</c>, <c>[out, 1]</c> or <c>[1, in]</c>; feed-forward layers
/// are listed in <c>feedforward_modules</c>. Merging multiplies the weight's rows (and the bias) or its columns; unmerging
/// divides, as PEFT does (inexact where <c>l</c> is near zero).
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class IA3Attribute : Attribute
{
    /// <summary>Scale the layer's input features instead of its outputs (PEFT's <c>feedforward_modules</c>; PEFT's defaults
    /// do so for the second projection of a transformer's feed-forward block, e.g. Llama's <c>down_proj</c>).</summary>
    public bool FeedForward { get; set; }

    /// <summary>Initialise <c>l</c> to ones (PEFT's <c>init_ia3_weights=True</c>); false draws it from a standard normal,
    /// so the model does not start at its base (PEFT0019 warns).</summary>
    public bool InitWeights { get; set; } = true;

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
