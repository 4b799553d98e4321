namespace Peft;

/// <summary>Options of an SVFit adapter (<see cref="SVFitAttribute"/>).</summary>
/// <param name="Rank">The rank r: positive and at most min(in, out), or 0 to choose it per layer by
/// <paramref name="EnergyThreshold"/>.</param>
/// <param name="EnergyThreshold">With rank 0: the fraction of the weight's energy Σσ² the kept singular values hold, in
/// (0, 1] (0.99).</param>
public sealed record SVFitOptions(int Rank = 0, double EnergyThreshold = SVFitRules.DefaultEnergyThreshold) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => SVFitMethod.Instance;

    /// <summary>True: the adapter leaves the residual <c>W − U_r diag(σ₀) V_rᵀ</c> in the base.</summary>
    public override bool RewritesBase => true;

    /// <summary>Whether the rank is chosen from the weight's spectrum (rank 0).</summary>
    public bool RankByEnergy => Rank == 0;

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        string where = $"SVFit adapter '{adapterName}'{AdapterNameRules.Describe(layer.MemberName)}";
        if (Rank < 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, or 0 to choose it by EnergyThreshold; got {Rank}.", layer.MemberName, adapterName);
        }

        long max = Math.Min(layer.InFeatures, layer.OutFeatures);
        if (Rank > max)
        {
            throw new PeftConfigurationException(
                $"{where}: rank {Rank} is larger than min(in, out) = {max} of the layer ({layer.InFeatures} -> {layer.OutFeatures}), which has only {max} singular values. Use a rank of at most {max}, or 0 to choose it by energy.",
                layer.MemberName, adapterName);
        }

        if (!SVFitRules.IsValidThreshold(EnergyThreshold))
        {
            throw new PeftConfigurationException($"{where}: EnergyThreshold must be in (0, 1], got {EnergyThreshold}. Use e.g. 0.99 (the default).", layer.MemberName, adapterName);
        }

        if (Rank > 0 && EnergyThreshold != SVFitRules.DefaultEnergyThreshold)
        {
            throw new PeftConfigurationException(
                $"{where}: EnergyThreshold {EnergyThreshold} applies only with rank 0 (rank chosen by energy), but rank is {Rank}. Remove one of them.",
                layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new SVFitAdapter(adapterName, layer, this);

    /// <summary>The module's <c>rank_pattern</c> entry, when a configuration (a file being loaded) has one.</summary>
    /// <param name="fullName">The module's full dotted name.</param>
    /// <param name="targets">The configuration.</param>
    /// <returns>The options for that module.</returns>
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, _) = targets.PatternsFor(fullName);
        return rank is int r ? this with { Rank = r, EnergyThreshold = SVFitRules.DefaultEnergyThreshold } : this;
    }

    /// <summary>The rank decides the update computed from the same tensors (an adapter's options hold the rank its
    /// initialisation chose).</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they compute the same update.</returns>
    public override bool SameUpdate(PeftAdapterOptions other) => other is SVFitOptions o && o.Rank == Rank;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", RankByEnergy ? "by energy" : Rank);
        if (RankByEnergy) yield return ("energy_threshold", EnergyThreshold);
    }
}
