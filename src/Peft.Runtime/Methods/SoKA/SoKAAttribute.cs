namespace Peft;

/// <summary>
/// Adds a SoKA adapter ("Singular Value Decomposition on Kronecker Adaptation for Large Language Model"; not in Hugging Face
/// PEFT) to a linear layer: the weight's Kronecker-product SVD (Van Loan–Pitsianis) <c>W = Σ_k σ_k U_k ⊗ V_k</c> gives the
/// trainable factors of the top r components, <c>√σ_k U_k</c> <c>[m, n]</c> and <c>√σ_k V_k</c> <c>[p, q]</c>, and the base
/// keeps the residual of the rest (PiSSA-like, this library's reading of the paper), so the layer starts equal to the original.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// out = m·p and in = n·q are split as LoKr splits them (<see cref="Factor"/>). The rank is <c>rank</c> when positive; with
/// <c>rank</c> 0 (the default) it is the smaller of the smallest rank holding <see cref="EnergyThreshold"/> of Σσ_k² and the
/// elbow of the σ curve, per layer. Files use this library's own format (<c>peft_type</c> "SOKA", tensors <c>soka_w1</c>,
/// <c>soka_w2</c>; docs/methods.md).
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class SoKAAttribute : Attribute
{
    /// <summary>Declares a SoKA adapter.</summary>
    /// <param name="rank">The number r of Kronecker terms: positive and at most min(m·n, p·q), or 0 (the default) to choose it
    /// by energy and elbow.</param>
    public SoKAAttribute(int rank = 0)
    {
        Rank = rank;
    }

    /// <summary>The rank r, or 0 for the automatic rank.</summary>
    public int Rank { get; }

    /// <summary>The first factor of both sizes (m and n): -1 (the default) for the split closest to the square roots, or a
    /// positive number dividing in and out (LoKr's <c>decompose_factor</c>).</summary>
    public int Factor { get; set; } = -1;

    /// <summary>With <see cref="Rank"/> 0: the fraction τ of Σσ_k² the kept components must hold, in (0, 1] (default 0.9);
    /// the elbow of the σ curve may stop earlier. Only valid with rank 0.</summary>
    public double EnergyThreshold { get; set; } = SoKARules.DefaultEnergyThreshold;

    /// <summary>The adapter name. Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
