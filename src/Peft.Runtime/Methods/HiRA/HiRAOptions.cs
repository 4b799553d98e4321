namespace Peft;

/// <summary>
/// Options of a HiRA adapter, with Hugging Face PEFT's <c>HiraConfig</c> defaults.
/// </summary>
/// <param name="Rank">The rank r of the factor <c>B A</c> (positive, at most min(in, out)). PEFT's <c>r</c> (default 32).</param>
/// <param name="Dropout">PEFT's <c>hira_dropout</c>, in [0, 1): in training, the update term <c>(W ⊙ B A) x</c> reads a
/// dropped-out input (which costs a second full-size product that pass).</param>
public sealed record HiRAOptions(int Rank = HiRARules.DefaultRank, double Dropout = 0.0) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => HiRAMethod.Instance;

    /// <summary>Checks the options against a layer's sizes.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <param name="inFeatures">The layer's input size.</param>
    /// <param name="outFeatures">The layer's output size.</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName, long inFeatures, long outFeatures)
    {
        string where = $"HiRA adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (Rank <= 0)
        {
            throw new PeftConfigurationException($"{where}: Rank must be positive, got {Rank}. Use a rank of 1 or more (PEFT's default is 32).", memberName, adapterName);
        }

        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw new PeftConfigurationException($"{where}: Dropout must be in [0, 1), got {Dropout}. Use 0 for none.", memberName, adapterName);
        }

        long max = HiRARules.MaxRank(inFeatures, outFeatures);
        if (Rank > max)
        {
            throw new PeftConfigurationException(
                $"{where}: Rank {Rank} exceeds min(in_features={inFeatures}, out_features={outFeatures}) = {max}. Use a rank of at most {max}.",
                memberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName, layer.InFeatures, layer.OutFeatures);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new HiRAAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, _) = targets.PatternsFor(fullName);
        return this with { Rank = rank ?? Rank };
    }

    /// <summary>The rank decides the update computed from the same tensors; dropout acts only in training.</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they compute the same update.</returns>
    public override bool SameUpdate(PeftAdapterOptions other) => other is HiRAOptions o && o.Rank == Rank;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", Rank);
        yield return ("hira_dropout", Dropout);
    }
}
