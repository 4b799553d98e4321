namespace Peft;

/// <summary>
/// Adds a HiRA adapter (Hugging Face PEFT's <c>hira</c>, "Hadamard High-Rank Adaptation"; this library's form of HUT, the
/// Hadamard Updated Transformation) to a linear layer: <c>W' = W ⊙ (1 + B A)</c> with <c>A ∈ R^{r×in}</c>,
/// <c>B ∈ R^{out×r}</c>. The update <c>W ⊙ B A</c> has rank up to rank(W)·r with r·(in + out) parameters; B starts at zero, so
/// the adapted layer starts equal to the base layer.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// Saved as PEFT's <c>HiraConfig</c> with tensors <c>hira_A</c> and <c>hira_B</c>. The forward forms the effective weight
/// once and runs one base product (<see cref="IWeightRewritingAdapter"/>). PEFT applies no scaling, so there is no alpha.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class HiRAAttribute : Attribute
{
    /// <summary>Declares a HiRA adapter.</summary>
    /// <param name="rank">The rank r of the factor <c>B A</c> (positive, at most min(in, out)); PEFT's default is 32.</param>
    /// <param name="dropout">PEFT's <c>hira_dropout</c>, in [0, 1): dropout on the input of the update term, in training only.</param>
    public HiRAAttribute(int rank = 32, double dropout = 0.0)
    {
        Rank = rank;
        Dropout = dropout;
    }

    /// <summary>The rank r.</summary>
    public int Rank { get; }

    /// <summary>The dropout probability on the update term's input.</summary>
    public double Dropout { get; }

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
