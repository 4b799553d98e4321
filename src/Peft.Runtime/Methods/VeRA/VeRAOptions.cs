namespace Peft;

/// <summary>
/// Options of a VeRA adapter, with Hugging Face PEFT's <c>VeraConfig</c> defaults.
/// </summary>
/// <param name="Rank">The rank r of the shared projections (positive). PEFT's <c>r</c> (256).</param>
/// <param name="Dropout">PEFT's <c>vera_dropout</c>, in [0, 1): dropout on the adapter's input, in training only.</param>
/// <param name="DInitial">PEFT's <c>d_initial</c> (finite): the initial value of λ_d (0.1).</param>
/// <param name="ProjectionPrngKey">PEFT's <c>projection_prng_key</c>: the seed of the shared projections (0).</param>
/// <param name="SaveProjection">PEFT's <c>save_projection</c>: whether files store the shared projections (true).</param>
public sealed record VeRAOptions(
    int Rank = 256,
    double Dropout = 0.0,
    double DInitial = 0.1,
    int ProjectionPrngKey = 0,
    bool SaveProjection = true) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => VeRAMethod.Instance;

    /// <summary>Checks the options.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        string where = $"VeRA adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (Rank <= 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, got {Rank}. Use a rank of 1 or more (PEFT's default is 256).", memberName, adapterName);
        }

        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw new PeftConfigurationException($"{where}: Dropout must be in [0, 1), got {Dropout}. Use 0 for none.", memberName, adapterName);
        }

        if (!double.IsFinite(DInitial))
        {
            throw new PeftConfigurationException($"{where}: DInitial must be finite, got {DInitial}. Use PEFT's default 0.1.", memberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new VeRAAdapter(adapterName, layer, this);

    /// <summary>The rank and the projections (seed) decide the update computed from the same λ vectors; dropout acts only in
    /// training, d_initial only at creation, and save_projection only in files.</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they compute the same update.</returns>
    public override bool SameUpdate(PeftAdapterOptions other)
        => other is VeRAOptions o && o.Rank == Rank && o.ProjectionPrngKey == ProjectionPrngKey;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", Rank);
        yield return ("vera_dropout", Dropout);
        yield return ("d_initial", DInitial);
        yield return ("projection_prng_key", ProjectionPrngKey);
        yield return ("save_projection", SaveProjection);
    }
}
