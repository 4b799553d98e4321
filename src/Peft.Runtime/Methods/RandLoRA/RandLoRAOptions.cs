namespace Peft;

/// <summary>
/// Options of a RandLoRA adapter, with Hugging Face PEFT's <c>RandLoraConfig</c> defaults.
/// </summary>
/// <param name="Rank">The basis rank r (positive). PEFT's <c>r</c> (32).</param>
/// <param name="Alpha">PEFT's <c>randlora_alpha</c> (640): the scaling is alpha / r.</param>
/// <param name="Dropout">PEFT's <c>randlora_dropout</c>, in [0, 1): dropout on the adapter's input, in training only.</param>
/// <param name="ProjectionPrngKey">PEFT's <c>projection_prng_key</c>: the seed of the shared bases (0).</param>
/// <param name="SaveProjection">PEFT's <c>save_projection</c>: whether files store the shared bases (true).</param>
/// <param name="Sparse">PEFT's <c>sparse</c>: ternary bases with probabilities 1/6, 2/3, 1/6 (false).</param>
/// <param name="VerySparse">PEFT's <c>very_sparse</c>: ternary bases with probabilities 1/(2√min_dim) for ±1; wins over
/// <paramref name="Sparse"/> (false).</param>
public sealed record RandLoRAOptions(
    int Rank = 32,
    double Alpha = 640,
    double Dropout = 0.0,
    int ProjectionPrngKey = 0,
    bool SaveProjection = true,
    bool Sparse = false,
    bool VerySparse = false) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => RandLoRAMethod.Instance;

    /// <summary>The scaling s = alpha / r.</summary>
    public double Scaling => Alpha / Rank;

    /// <summary>How the shared bases are drawn: "very_sparse", "sparse" or "dense" (PEFT's precedence).</summary>
    public string BasisKind => VerySparse ? "very_sparse" : Sparse ? "sparse" : "dense";

    /// <summary>Checks the options.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        string where = $"RandLoRA adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (Rank <= 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, got {Rank}. Use a rank of 1 or more (PEFT's default is 32).", memberName, adapterName);
        }

        if (!(Alpha > 0) || double.IsInfinity(Alpha))
        {
            throw new PeftConfigurationException($"{where}: alpha must be positive and finite, got {Alpha}. Use PEFT's 20 · r (640 for r = 32).", memberName, adapterName);
        }

        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw new PeftConfigurationException($"{where}: Dropout must be in [0, 1), got {Dropout}. Use 0 for none.", memberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new RandLoRAAdapter(adapterName, layer, this);

    /// <summary>The rank, alpha and the bases (seed and kind) decide the update computed from the same λ and γ; dropout
    /// acts only in training and save_projection only in files.</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they compute the same update.</returns>
    public override bool SameUpdate(PeftAdapterOptions other)
        => other is RandLoRAOptions o && o.Rank == Rank && o.Alpha == Alpha && o.ProjectionPrngKey == ProjectionPrngKey && o.BasisKind == BasisKind;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", Rank);
        yield return ("randlora_alpha", Alpha);
        yield return ("scaling", Scaling);
        yield return ("randlora_dropout", Dropout);
        yield return ("projection_prng_key", ProjectionPrngKey);
        yield return ("save_projection", SaveProjection);
        yield return ("sparse", Sparse);
        yield return ("very_sparse", VerySparse);
    }
}
