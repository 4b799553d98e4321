namespace Peft;

/// <summary>Options of a SoKA adapter (<see cref="SoKAAttribute"/>).</summary>
/// <param name="Rank">The number r of Kronecker terms: positive and at most min(m·n, p·q), or 0 to choose it per layer by
/// energy and elbow.</param>
/// <param name="Factor">-1, or a positive first factor of in and out.</param>
/// <param name="EnergyThreshold">With rank 0: the energy fraction τ in (0, 1] (0.9).</param>
public sealed record SoKAOptions(int Rank = 0, int Factor = -1, double EnergyThreshold = SoKARules.DefaultEnergyThreshold) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => SoKAMethod.Instance;

    /// <summary>True: the adapter leaves the residual <c>W − Σ_{k≤r} σ_k U_k ⊗ V_k</c> in the base.</summary>
    public override bool RewritesBase => true;

    /// <summary>Whether the rank is chosen from the weight's Kronecker spectrum (rank 0).</summary>
    public bool RankAutomatic => Rank == 0;

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        string where = $"SoKA adapter '{adapterName}'{AdapterNameRules.Describe(layer.MemberName)}";
        if (Rank < 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, or 0 to choose it by energy and elbow; got {Rank}.", layer.MemberName, adapterName);
        }

        if (layer.InFeatures > int.MaxValue || layer.OutFeatures > int.MaxValue)
        {
            throw new PeftConfigurationException($"{where}: the layer ({layer.InFeatures} -> {layer.OutFeatures}) is too large to factorise.", layer.MemberName, adapterName);
        }

        if (!SoKARules.IsValidFactor(layer.InFeatures, layer.OutFeatures, Factor))
        {
            throw new PeftConfigurationException(
                $"{where}: Factor {Factor} must be -1 (automatic) or a positive number dividing both in_features {layer.InFeatures} and out_features {layer.OutFeatures}.",
                layer.MemberName, adapterName);
        }

        long max = SoKARules.MaxRank((int)layer.InFeatures, (int)layer.OutFeatures, Factor);
        if (Rank > max)
        {
            var (m, n, p, q) = SoKARules.Shapes((int)layer.InFeatures, (int)layer.OutFeatures, Factor);
            throw new PeftConfigurationException(
                $"{where}: rank {Rank} is larger than the {max} Kronecker components of the layer ({layer.InFeatures} -> {layer.OutFeatures} as [{m}, {n}] ⊗ [{p}, {q}]: min(m·n, p·q) = {max}). Use a rank of at most {max}, or 0 to choose it by energy.",
                layer.MemberName, adapterName);
        }

        if (!SoKARules.IsValidThreshold(EnergyThreshold))
        {
            throw new PeftConfigurationException($"{where}: EnergyThreshold must be in (0, 1], got {EnergyThreshold}. Use e.g. {SoKARules.DefaultEnergyThreshold} (the default).", layer.MemberName, adapterName);
        }

        if (Rank > 0 && EnergyThreshold != SoKARules.DefaultEnergyThreshold)
        {
            throw new PeftConfigurationException(
                $"{where}: EnergyThreshold {EnergyThreshold} applies only with rank 0 (rank chosen by energy and elbow), but rank is {Rank}. Remove one of them.",
                layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new SoKAAdapter(adapterName, layer, this);

    /// <summary>The module's <c>rank_pattern</c> entry, when a configuration (a file being loaded) has one.</summary>
    /// <param name="fullName">The module's full dotted name.</param>
    /// <param name="targets">The configuration.</param>
    /// <returns>The options for that module.</returns>
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, _) = targets.PatternsFor(fullName);
        return rank is int r ? this with { Rank = r, EnergyThreshold = SoKARules.DefaultEnergyThreshold } : this;
    }

    /// <summary>The rank and factor decide the update computed from the same tensors.</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they compute the same update.</returns>
    public override bool SameUpdate(PeftAdapterOptions other) => other is SoKAOptions o && o.Rank == Rank && o.Factor == Factor;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", RankAutomatic ? "by energy and elbow" : Rank);
        yield return ("decompose_factor", Factor);
        if (RankAutomatic) yield return ("energy_threshold", EnergyThreshold);
    }
}
