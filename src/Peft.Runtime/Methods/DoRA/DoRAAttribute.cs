namespace Peft;

/// <summary>
/// Adds a DoRA adapter (Liu et al., 2024, "Weight-Decomposed Low-Rank Adaptation") to a linear layer: the weight is split
/// into a learned magnitude per output row and a direction updated by LoRA, <c>W' = m ⊙ (W + s·BA) / ‖W + s·BA‖</c> (row
/// norms, the norm treated as a constant in backward, as PEFT does). At initialisation <c>m = ‖W‖</c> and <c>B = 0</c>, so
/// the adapted layer equals the base layer.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// Saved as Hugging Face PEFT's <c>LoraConfig(use_dora=True)</c>: <c>lora_A.weight</c>, <c>lora_B.weight</c> and
/// <c>lora_magnitude_vector</c>. Defaults match PEFT's (r = 8, lora_alpha = 8, lora_dropout = 0).
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class DoRAAttribute : Attribute
{
    /// <summary>Declares a DoRA adapter.</summary>
    /// <param name="rank">The rank r of the direction update (positive, at most min(in, out)).</param>
    /// <param name="alpha">The scaling numerator (positive); the update is scaled by alpha / rank.</param>
    /// <param name="dropout">Dropout probability applied to the adapter's input, in [0, 1).</param>
    public DoRAAttribute(int rank = 8, double alpha = 8.0, double dropout = 0.0)
    {
        Rank = rank;
        Alpha = alpha;
        Dropout = dropout;
    }

    /// <summary>The rank r of the low-rank direction update.</summary>
    public int Rank { get; }

    /// <summary>The scaling numerator alpha.</summary>
    public double Alpha { get; }

    /// <summary>Dropout probability on the adapter path (skipped entirely when 0).</summary>
    public double Dropout { get; }

    /// <summary>Use rank-stabilised scaling alpha / √r instead of alpha / r.</summary>
    public bool UseRsLora { get; set; }

    /// <summary>How A and B are initialised (B starts at zero except for <see cref="LoRAInit.Random"/>).</summary>
    public LoRAInit Init { get; set; } = LoRAInit.KaimingUniform;

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
