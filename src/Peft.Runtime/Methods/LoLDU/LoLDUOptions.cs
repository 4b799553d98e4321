namespace Peft;

/// <summary>Options of a LoLDU adapter (<see cref="LoLDUAttribute"/>).</summary>
/// <param name="Rank">The rank r: positive, at most min(in, out) (8).</param>
/// <param name="Alpha">α, positive and finite: the scaling factor starts at α / r (1, the official code's lora_alpha).</param>
public sealed record LoLDUOptions(int Rank = 8, double Alpha = 1.0) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => LoLDUMethod.Instance;

    /// <summary>The initial scaling factor α / r.</summary>
    public double Scaling => LoLDURules.Scaling(Alpha, Rank);

    /// <summary>True: the adapter leaves the residual <c>W − s₀·(P L_r) diag(z₀) U_r</c> in the base.</summary>
    public override bool RewritesBase => true;

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        string where = $"LoLDU adapter '{adapterName}'{AdapterNameRules.Describe(layer.MemberName)}";
        if (Rank <= 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, got {Rank}. Use a rank of 1 or more (default 8).", layer.MemberName, adapterName);
        }

        long max = Math.Min(layer.InFeatures, layer.OutFeatures);
        if (Rank > max)
        {
            throw new PeftConfigurationException(
                $"{where}: rank {Rank} is larger than min(in, out) = {max} of the layer ({layer.InFeatures} -> {layer.OutFeatures}), whose LU has only {max} pivots. Use a rank of at most {max}.",
                layer.MemberName, adapterName);
        }

        if (!(Alpha > 0) || double.IsInfinity(Alpha))
        {
            throw new PeftConfigurationException($"{where}: alpha must be positive and finite, got {Alpha}. Use a positive alpha (default 1).", layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new LoLDUAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, alpha) = targets.PatternsFor(fullName);
        return this with { Rank = rank ?? Rank, Alpha = alpha ?? Alpha };
    }

    /// <summary>The rank decides the update computed from the same tensors (the scaling factor is a trained tensor; α only
    /// sets its initial value).</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they compute the same update.</returns>
    public override bool SameUpdate(PeftAdapterOptions other) => other is LoLDUOptions o && o.Rank == Rank;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", Rank);
        yield return ("alpha", Alpha);
        yield return ("initial scaling", Scaling);
    }
}
