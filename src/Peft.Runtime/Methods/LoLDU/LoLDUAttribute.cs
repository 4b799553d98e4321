namespace Peft;

/// <summary>
/// Adds a LoLDU adapter ("LoLDU: Low-Rank Adaptation via Lower-Diag-Upper Decomposition"; the official code SKDDJ/LoLDU, not
/// in Hugging Face PEFT) to a linear layer: from the partial-pivoting LU of the weight, <c>W = P L D U</c> with unit triangular
/// L and U, the first r columns of <c>P L</c> and rows of <c>U</c> are frozen and only the diagonal <c>z</c> <c>[r]</c> (init
/// <c>D_r</c>) and a scaling factor <c>s</c> (init α / r) train: <c>W' = W_res + s·(P L_r) diag(z) U_r</c>. When the adapter
/// joins its layer the base keeps <c>W_res = W − s₀·(P L_r) diag(z₀) U_r</c>, so the layer starts equal to the original (an
/// <see cref="IBaseRewritingAdapter"/>).
/// </summary>
/// <remarks>Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a
/// <c>TorchSharp.Modules.Linear</c>. Files use this library's own format (<c>peft_type</c> "LOLDU"; docs/methods.md).</remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class LoLDUAttribute : Attribute
{
    /// <summary>Declares a LoLDU adapter.</summary>
    /// <param name="rank">The rank r: positive, at most min(in, out) (default 8).</param>
    /// <param name="alpha">α: the scaling factor starts at α / r (positive; default 1, the official code's lora_alpha).</param>
    public LoLDUAttribute(int rank = 8, double alpha = 1.0)
    {
        Rank = rank;
        Alpha = alpha;
    }

    /// <summary>The rank r.</summary>
    public int Rank { get; }

    /// <summary>α.</summary>
    public double Alpha { get; }

    /// <summary>The adapter name. Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
