namespace Peft;

/// <summary>
/// Options of a LoHa adapter, with Hugging Face PEFT's <c>LoHaConfig</c> defaults.
/// </summary>
/// <param name="Rank">The rank r of each of the two low-rank products (positive). PEFT's <c>r</c>.</param>
/// <param name="Alpha">The scaling numerator (positive, finite); ΔW is scaled by alpha / r. PEFT's <c>alpha</c>.</param>
/// <param name="RankDropout">PEFT's <c>rank_dropout</c>, in [0, 1): in training, each output row of ΔW is kept with
/// probability 1 − p, and the kept rows are multiplied by 1 / (fraction of rows kept).</param>
/// <param name="ModuleDropout">PEFT's <c>module_dropout</c>, in [0, 1): in training, the adapter is skipped for a whole forward
/// pass with probability p.</param>
public sealed record LoHaOptions(
    int Rank = 8,
    double Alpha = 8.0,
    double RankDropout = 0.0,
    double ModuleDropout = 0.0) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => LoHaMethod.Instance;

    /// <summary>The factor alpha / r applied to the Hadamard product.</summary>
    public double Scaling => LoHaRules.Scaling(Alpha, Rank);

    /// <summary>Checks the options.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        string where = $"LoHa adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (Rank <= 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, got {Rank}. Use a rank of 1 or more (PEFT's default is 8).", memberName, adapterName);
        }

        if (!(Alpha > 0) || double.IsInfinity(Alpha))
        {
            throw new PeftConfigurationException($"{where}: alpha must be positive and finite, got {Alpha}. Use a positive alpha (PEFT's default is 8).", memberName, adapterName);
        }

        if (!(RankDropout >= 0 && RankDropout < 1))
        {
            throw new PeftConfigurationException($"{where}: RankDropout must be in [0, 1), got {RankDropout}. Use 0 for none.", memberName, adapterName);
        }

        if (!(ModuleDropout >= 0 && ModuleDropout < 1))
        {
            throw new PeftConfigurationException($"{where}: ModuleDropout must be in [0, 1), got {ModuleDropout}. Use 0 for none.", memberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new LoHaAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, alpha) = targets.PatternsFor(fullName);
        return this with { Rank = rank ?? Rank, Alpha = alpha ?? Alpha };
    }

    /// <summary>Rank and alpha decide the update computed from the same tensors; the dropouts act only in training.</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they compute the same update.</returns>
    public override bool SameUpdate(PeftAdapterOptions other) => other is LoHaOptions o && o.Rank == Rank && o.Alpha == Alpha;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", Rank);
        yield return ("alpha", Alpha);
        yield return ("scaling", Scaling);
        yield return ("rank_dropout", RankDropout);
        yield return ("module_dropout", ModuleDropout);
    }
}
