namespace Peft;

/// <summary>
/// Adds a Kronecker-product adapter (LoKr, as in Hugging Face PEFT) to a linear layer:
/// <c>ΔW = (alpha / rank) · kron(W1, W2)</c> with <c>W1 ∈ R^{l×m}</c>, <c>W2 ∈ R^{k×n}</c>, <c>out = l·k</c>, <c>in = m·n</c>.
/// </summary>
/// <remarks>
/// The factor sizes follow PEFT's <c>factorization</c> rule (factors near the square root, smaller first, or
/// <see cref="Factor"/> when it divides the size). W2 (and W1 with <see cref="DecomposeBoth"/>) become a rank-r
/// product when r is below half the factor's larger side. The forward pass uses the Kronecker structure
/// (<c>vec(W2 X W1ᵀ)</c>) and never forms the out × in matrix during training.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class KroneckerAttribute : Attribute
{
    /// <summary>Declares a Kronecker adapter.</summary>
    /// <param name="rank">The rank r used for the low-rank factors (positive).</param>
    /// <param name="alpha">The scaling numerator (positive); ΔW is scaled by alpha / rank.</param>
    public KroneckerAttribute(int rank = 8, double alpha = 8.0)
    {
        Rank = rank;
        Alpha = alpha;
    }

    /// <summary>The rank r of the low-rank factors.</summary>
    public int Rank { get; }

    /// <summary>The scaling numerator alpha.</summary>
    public double Alpha { get; }

    /// <summary>PEFT's <c>decompose_factor</c>: -1 for automatic factor sizes; otherwise the first factor's size where it divides a
    /// layer size, and an upper bound on the smaller factor where it does not (see <see cref="KroneckerRules.Factorize"/>).</summary>
    public int Factor { get; set; } = -1;

    /// <summary>PEFT's <c>decompose_both</c>: also write W1 as a rank-r product.</summary>
    public bool DecomposeBoth { get; set; }

    /// <summary>DiffuseKronA: both factors full on every layer (<c>ΔW = (alpha / rank) · A ⊗ B</c>), their sizes chosen by
    /// <see cref="Factor"/>; saved as the PEFT LoKr settings that give the same adapter (see
    /// <see cref="KroneckerOptions.FullFactors"/>).</summary>
    public bool FullFactors { get; set; }

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
