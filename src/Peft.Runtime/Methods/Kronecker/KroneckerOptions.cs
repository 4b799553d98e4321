namespace Peft;

/// <summary>
/// Options of a Kronecker-product (LoKr) adapter, with Hugging Face PEFT's <c>LoKrConfig</c> defaults.
/// </summary>
/// <param name="Rank">The rank r of low-rank factors (positive). PEFT's <c>r</c>.</param>
/// <param name="Alpha">The scaling numerator (positive, finite); ΔW is scaled by alpha / r. PEFT's <c>alpha</c>.</param>
/// <param name="Factor">PEFT's <c>decompose_factor</c>: -1 for automatic factor sizes, or a positive size for the first factor.</param>
/// <param name="DecomposeBoth">PEFT's <c>decompose_both</c>: also write W1 as a rank-r product when r is small enough.</param>
/// <param name="FullFactors">DiffuseKronA: both factors are full matrices on every layer, <c>ΔW = (alpha / r) · A ⊗ B</c>, with
/// <see cref="Factor"/> choosing their sizes. Each layer's adapter is created with PEFT's own settings for that (r raised to
/// <see cref="KroneckerRules.FullFactorRank"/> where smaller, alpha raised in proportion so the scale is unchanged), so files
/// are plain LoKr files that PEFT loads with full <c>lokr_w1</c> and <c>lokr_w2</c>.</param>
public sealed record KroneckerOptions(
    int Rank = 8,
    double Alpha = 8.0,
    int Factor = -1,
    bool DecomposeBoth = false,
    bool FullFactors = false) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => KroneckerMethod.Instance;

    /// <summary>The factor alpha / r applied to <c>kron(W1, W2)</c>.</summary>
    public double Scaling => Alpha / Rank;

    /// <summary>Checks the options.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        string where = $"Kronecker adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (Rank <= 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, got {Rank}.", memberName, adapterName);
        }

        if (!(Alpha > 0) || double.IsInfinity(Alpha))
        {
            throw new PeftConfigurationException($"{where}: alpha must be positive and finite, got {Alpha}.", memberName, adapterName);
        }

        if (Factor == 0 || Factor < -1)
        {
            throw new PeftConfigurationException(
                $"{where}: factor must be -1 (automatic) or a positive size, got {Factor}.", memberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName);
        if (layer.InFeatures > int.MaxValue || layer.OutFeatures > int.MaxValue)
        {
            throw new PeftConfigurationException(
                $"Kronecker adapter '{adapterName}'{layer.Where}: layer sizes {layer.InFeatures} x {layer.OutFeatures} are too large.",
                layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new KroneckerAdapter(adapterName, layer, this);

    /// <summary>
    /// The options PEFT would need for this layer: unchanged unless <see cref="FullFactors"/>, which becomes the rank at which
    /// PEFT keeps both factors full (<see cref="KroneckerRules.FullFactorRank"/>, where that is above <see cref="Rank"/>) with
    /// alpha scaled by the same ratio, so <see cref="Scaling"/> is unchanged.
    /// </summary>
    /// <param name="inFeatures">The layer's input size.</param>
    /// <param name="outFeatures">The layer's output size.</param>
    /// <returns>Options without <see cref="FullFactors"/> that give the same adapter.</returns>
    public KroneckerOptions ForLayer(long inFeatures, long outFeatures)
    {
        if (!FullFactors)
        {
            return this;
        }

        int rank = Math.Max(Rank, KroneckerRules.FullFactorRank(inFeatures, outFeatures, Factor));
        return this with { Rank = rank, Alpha = Alpha * rank / Rank, FullFactors = false };
    }

    /// <inheritdoc />
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, alpha) = targets.PatternsFor(fullName);
        return this with { Rank = rank ?? Rank, Alpha = alpha ?? Alpha };
    }

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", Rank);
        yield return ("alpha", Alpha);
        yield return ("scaling", Scaling);
        yield return ("decompose_factor", Factor);
        yield return ("decompose_both", DecomposeBoth);
        if (FullFactors)
        {
            yield return ("full_factors", true);
        }
    }
}
