namespace Peft;

/// <summary>
/// Adds an SVFit adapter ("SVFit: Parameter-Efficient Fine-Tuning of Large Pre-Trained Models Using Singular Values"; not in
/// Hugging Face PEFT) to a linear layer: the weight's top-r singular vectors <c>U_r</c>, <c>V_r</c> are frozen and only the r
/// singular values σ train, <c>W = W_res + U_r diag(σ) V_rᵀ</c>. When the adapter joins its layer it takes the SVD of the
/// weight, keeps <c>σ₀</c>, <c>U_r</c>, <c>V_r</c> and leaves the residual <c>W_res = W − U_r diag(σ₀) V_rᵀ</c> in the base, so
/// the layer starts equal to the original (an <see cref="IBaseRewritingAdapter"/>, as PiSSA).
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// The rank is <c>rank</c> when positive; with <c>rank</c> 0 (the default) it is the smallest rank whose singular values hold
/// at least <see cref="EnergyThreshold"/> of the energy Σσ² of that layer's weight, so it can differ per layer. Files use this
/// library's own format (<c>peft_type</c> "SVFIT", tensors <c>svfit_sigma</c>, <c>svfit_U</c>, <c>svfit_Vh</c>; docs/methods.md).
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class SVFitAttribute : Attribute
{
    /// <summary>Declares an SVFit adapter.</summary>
    /// <param name="rank">The rank r: positive and at most min(in, out), or 0 (the default) to choose it by
    /// <see cref="EnergyThreshold"/>.</param>
    public SVFitAttribute(int rank = 0)
    {
        Rank = rank;
    }

    /// <summary>The rank r, or 0 for the energy rule.</summary>
    public int Rank { get; }

    /// <summary>With <see cref="Rank"/> 0: the fraction of the energy Σσ² the kept singular values must hold, in (0, 1]
    /// (default 0.99). Only valid with rank 0.</summary>
    public double EnergyThreshold { get; set; } = 0.99;

    /// <summary>The adapter name. Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
