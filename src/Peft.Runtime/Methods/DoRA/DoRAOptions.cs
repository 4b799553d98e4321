namespace Peft;

/// <summary>Options of a DoRA adapter, with Hugging Face PEFT's <c>LoraConfig(use_dora=True)</c> defaults.</summary>
/// <param name="Rank">The rank r (positive, at most min(in, out) of the layer). PEFT's <c>r</c>.</param>
/// <param name="Alpha">The scaling numerator (positive, finite). PEFT's <c>lora_alpha</c>.</param>
/// <param name="Dropout">Dropout probability on the adapter input, in [0, 1). PEFT's <c>lora_dropout</c>.</param>
/// <param name="UseRsLora">Scale by alpha / √r instead of alpha / r. PEFT's <c>use_rslora</c>.</param>
/// <param name="Init">How A and B are initialised. PEFT's <c>init_lora_weights</c>.</param>
public sealed record DoRAOptions(
    int Rank = 8,
    double Alpha = 8.0,
    double Dropout = 0.0,
    bool UseRsLora = false,
    LoRAInit Init = LoRAInit.KaimingUniform) : PeftAdapterOptions, ILoRAFormatOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => DoRAMethod.Instance;

    /// <summary>The factor s applied to <c>B A</c>: alpha / r, or alpha / √r with <see cref="UseRsLora"/>.</summary>
    public double Scaling => LoRARules.Scaling(Alpha, Rank, UseRsLora);

    /// <inheritdoc />
    public LoRAOptions AsLoRA => new(Rank, Alpha, Dropout, UseRsLora, Init);

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        LowRank.Validate("DoRA", adapterName, layer.MemberName, Rank, Alpha, Dropout, layer.InFeatures, layer.OutFeatures, Init);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new DoRAAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, alpha) = targets.PatternsFor(fullName);
        return this with { Rank = rank ?? Rank, Alpha = alpha ?? Alpha };
    }

    /// <inheritdoc />
    public override bool SameUpdate(PeftAdapterOptions other)
        => other is DoRAOptions o && o.Rank == Rank && o.Alpha == Alpha && o.UseRsLora == UseRsLora;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe() => AsLoRA.Describe();
}
