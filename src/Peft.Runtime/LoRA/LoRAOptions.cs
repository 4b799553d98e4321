namespace Peft;

/// <summary>
/// Options of a LoRA adapter, with Hugging Face PEFT's <c>LoraConfig</c> defaults.
/// </summary>
/// <param name="Rank">The rank r (positive, at most min(in, out) of the layer). PEFT's <c>r</c>.</param>
/// <param name="Alpha">The scaling numerator (positive, finite). PEFT's <c>lora_alpha</c>.</param>
/// <param name="Dropout">Dropout probability on the adapter input, in [0, 1). PEFT's <c>lora_dropout</c>.</param>
/// <param name="UseRsLora">Scale by alpha / √r instead of alpha / r. PEFT's <c>use_rslora</c>.</param>
/// <param name="Init">How A is initialised (B always starts at zero). PEFT's <c>init_lora_weights</c>.</param>
public sealed record LoRAOptions(
    int Rank = 8,
    double Alpha = 8.0,
    double Dropout = 0.0,
    bool UseRsLora = false,
    LoRAInit Init = LoRAInit.KaimingUniform) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => PeftMethod.LoRA;

    /// <summary>The factor s applied to <c>B A x</c>: alpha / r, or alpha / √r with <see cref="UseRsLora"/>.</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>Checks the options for a layer of the given sizes.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <param name="inFeatures">The layer's input size.</param>
    /// <param name="outFeatures">The layer's output size.</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName, long inFeatures, long outFeatures)
    {
        string where = $"LoRA adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (Rank <= 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, got {Rank}.", memberName, adapterName);
        }

        if (!(Alpha > 0) || double.IsInfinity(Alpha))
        {
            throw new PeftConfigurationException($"{where}: alpha must be positive and finite, got {Alpha}.", memberName, adapterName);
        }

        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw new PeftConfigurationException($"{where}: dropout must be in [0, 1), got {Dropout}.", memberName, adapterName);
        }

        if (!Enum.IsDefined(Init))
        {
            throw new PeftConfigurationException($"{where}: unknown initialisation {Init}.", memberName, adapterName);
        }

        long max = Math.Min(inFeatures, outFeatures);
        if (Rank > max)
        {
            throw new PeftConfigurationException(
                $"{where}: rank {Rank} exceeds min(in_features={inFeatures}, out_features={outFeatures}) = {max}. Use a rank of at most {max}.",
                memberName, adapterName);
        }
    }
}
