namespace Peft;

/// <summary>Options of a KaSA adapter (<see cref="KaSAAttribute"/>), with PEFT's <c>LoraConfig</c> and <c>KasaConfig</c> defaults.</summary>
/// <param name="Rank">The rank r (positive, below min(in, out) of the layer). PEFT's <c>r</c>.</param>
/// <param name="Alpha">The scaling numerator (positive, finite). PEFT's <c>lora_alpha</c>.</param>
/// <param name="Dropout">Dropout probability on the adapter input, in [0, 1). PEFT's <c>lora_dropout</c>.</param>
/// <param name="UseRsLora">Scale by alpha / √r instead of alpha / r. PEFT's <c>use_rslora</c>.</param>
/// <param name="Beta">β of the loss term β·Σd² + γ(…) (finite, ≥ 0). PEFT's <c>kasa_config.beta</c>.</param>
/// <param name="Gamma">γ of the loss term (finite, ≥ 0). PEFT's <c>kasa_config.gamma</c>.</param>
public sealed record KaSAOptions(
    int Rank = 8,
    double Alpha = 8.0,
    double Dropout = 0.0,
    bool UseRsLora = false,
    double Beta = KaSARules.DefaultBeta,
    double Gamma = KaSARules.DefaultGamma) : PeftAdapterOptions, ILoRAFormatOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => KaSAMethod.Instance;

    /// <summary>True: the adapter truncates the base weight to its k − r largest singular directions.</summary>
    public override bool RewritesBase => true;

    /// <summary>The factor s applied to <c>B diag(d) A</c>: alpha / r, or alpha / √r with <see cref="UseRsLora"/>.</summary>
    public double Scaling => LoRARules.Scaling(Alpha, Rank, UseRsLora);

    /// <inheritdoc />
    public LoRAOptions AsLoRA => new(Rank, Alpha, Dropout, UseRsLora);

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        LowRank.Validate("KaSA", adapterName, layer.MemberName, Rank, Alpha, Dropout, layer.InFeatures, layer.OutFeatures, LoRAInit.KaimingUniform);
        string where = $"KaSA adapter '{adapterName}'{AdapterNameRules.Describe(layer.MemberName)}";
        long max = KaSARules.MaxRank(layer.InFeatures, layer.OutFeatures);
        if (Rank > max)
        {
            throw new PeftConfigurationException(
                $"{where}: rank {Rank} leaves no singular direction of the base weight ({layer.InFeatures} -> {layer.OutFeatures} has min(in, out) = {max + 1}; KaSA drops the r smallest). Use a rank of at most {max}.",
                layer.MemberName, adapterName);
        }

        if (!KaSARules.IsValidCoefficient(Beta))
        {
            throw new PeftConfigurationException($"{where}: Beta must be finite and >= 0, got {Beta}. Use e.g. {KaSARules.DefaultBeta} (the default), or 0 for no singular-value penalty.", layer.MemberName, adapterName);
        }

        if (!KaSARules.IsValidCoefficient(Gamma))
        {
            throw new PeftConfigurationException($"{where}: Gamma must be finite and >= 0, got {Gamma}. Use e.g. {KaSARules.DefaultGamma} (the default), or 0 for no orthogonality penalty.", layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new KaSAAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, alpha) = targets.PatternsFor(fullName);
        return this with { Rank = rank ?? Rank, Alpha = alpha ?? Alpha };
    }

    /// <inheritdoc />
    public override bool SameUpdate(PeftAdapterOptions other)
        => other is KaSAOptions o && o.Rank == Rank && o.Alpha == Alpha && o.UseRsLora == UseRsLora;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        foreach (var item in AsLoRA.Describe()) yield return item;
        yield return ("kasa_beta", Beta);
        yield return ("kasa_gamma", Gamma);
    }
}
