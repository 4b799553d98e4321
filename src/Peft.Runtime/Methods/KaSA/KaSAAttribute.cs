namespace Peft;

/// <summary>
/// Adds a KaSA adapter ("KaSA: Knowledge-Aware Singular-Value Adaptation of Large Language Models", Wang et al., 2024; PEFT's
/// LoRA variant <c>LoraConfig(kasa_config=KasaConfig(...))</c>) to a linear layer. When the adapter joins its layer, the base
/// weight <c>W = U S Vᵀ</c> loses its r smallest singular directions for good (<c>W ← U_{k−r} S_{k−r} V_{k−r}ᵀ</c>,
/// k = min(in, out)); the update is <c>s · B diag(d) A</c> with A kaiming-uniform, B zeros and the singular values
/// <c>d</c> (<c>lora_diag</c>) ~ N(0, 1), so the layer starts at the truncated base, not at the original one.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// The rank must be below min(in, out). The paper's regulariser <c>β·Σd² + γ(‖BᵀB − I‖_F + ‖AAᵀ − I‖_F)</c> is the adapter's
/// loss term: add <c>model.AdapterLossTerms()</c> to <c>TrainingOptions.Regularizers</c> (PEFT's
/// <c>get_kasa_regularization_loss</c>). Files are PEFT's: tensors <c>lora_A.weight</c>, <c>lora_B.weight</c>, <c>lora_diag</c>.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class KaSAAttribute : Attribute
{
    /// <summary>Declares a KaSA adapter.</summary>
    /// <param name="rank">The rank r: the number of dropped base directions and of learned ones (positive, below min(in, out)).</param>
    /// <param name="alpha">The scaling numerator (positive); the update is scaled by alpha / rank.</param>
    /// <param name="dropout">Dropout probability applied to the adapter's input, in [0, 1).</param>
    public KaSAAttribute(int rank = 8, double alpha = 8.0, double dropout = 0.0)
    {
        Rank = rank;
        Alpha = alpha;
        Dropout = dropout;
    }

    /// <summary>The rank r.</summary>
    public int Rank { get; }

    /// <summary>The scaling numerator alpha.</summary>
    public double Alpha { get; }

    /// <summary>Dropout probability on the adapter path.</summary>
    public double Dropout { get; }

    /// <summary>Use rank-stabilised scaling alpha / √r instead of alpha / r (PEFT's <c>use_rslora</c>).</summary>
    public bool UseRsLora { get; set; }

    /// <summary>β, the weight of the singular-value penalty β·Σd² in the adapter's loss term (finite, ≥ 0; default 1e-4).</summary>
    public double Beta { get; set; } = KaSARules.DefaultBeta;

    /// <summary>γ, the weight of the orthogonality penalty γ(‖BᵀB − I‖_F + ‖AAᵀ − I‖_F) (finite, ≥ 0; default 1e-3).</summary>
    public double Gamma { get; set; } = KaSARules.DefaultGamma;

    /// <summary>The adapter name. Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
