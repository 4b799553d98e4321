namespace Peft;

/// <summary>Options of a LayerNorm-tuning adapter (Hugging Face PEFT's <c>LNTuningConfig</c> has no settings beyond its
/// targets).</summary>
public sealed record LNTuningOptions : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => LNTuningMethod.Instance;

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (layer.Kind != PeftLayerKind.Norm)
        {
            throw new PeftConfigurationException(
                $"LNTuning adapter '{adapterName}'{layer.Where} needs a normalisation layer (LayerNorm or an IAdaptableNorm such as RMSNorm), not a {layer.Kind} layer; target the model's norms (e.g. input_layernorm, post_attention_layernorm, norm).",
                layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new LNTuningAdapter(adapterName, layer, this);
}
