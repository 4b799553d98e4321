namespace Peft;

/// <summary>
/// Adds a LoHa adapter (LyCORIS "low-rank Hadamard product", from FedPara; Hugging Face PEFT's <c>loha</c>) to a linear layer:
/// <c>ΔW = (alpha / rank) · (W1a W1b) ⊙ (W2a W2b)</c> with <c>W1a, W2a ∈ R^{out×r}</c> and <c>W1b, W2b ∈ R^{r×in}</c>. The
/// update has rank up to r² with 2·r·(in + out) parameters; <c>W2b</c> starts at zero, so the adapted layer starts equal to the
/// base layer.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// Saved as PEFT's <c>LoHaConfig</c> with tensors <c>hada_w1_a</c>, <c>hada_w1_b</c>, <c>hada_w2_a</c>, <c>hada_w2_b</c>. The
/// forward pass uses the face-splitting (Khatri-Rao) form <c>ΔW = U Vᵀ</c> with <c>r²</c> columns and never forms the
/// out × in update.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class LoHaAttribute : Attribute
{
    /// <summary>Declares a LoHa adapter.</summary>
    /// <param name="rank">The rank r of each of the two low-rank products (positive).</param>
    /// <param name="alpha">The scaling numerator (positive); ΔW is scaled by alpha / rank.</param>
    public LoHaAttribute(int rank = 8, double alpha = 8.0)
    {
        Rank = rank;
        Alpha = alpha;
    }

    /// <summary>The rank r of each low-rank product.</summary>
    public int Rank { get; }

    /// <summary>The scaling numerator alpha.</summary>
    public double Alpha { get; }

    /// <summary>PEFT's <c>rank_dropout</c>, in [0, 1): in training, each output row of ΔW is dropped with this probability and
    /// the kept rows are rescaled by 1 / (fraction kept).</summary>
    public double RankDropout { get; set; }

    /// <summary>PEFT's <c>module_dropout</c>, in [0, 1): in training, the whole adapter is skipped for a forward pass with this
    /// probability.</summary>
    public double ModuleDropout { get; set; }

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
