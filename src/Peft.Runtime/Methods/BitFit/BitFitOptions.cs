namespace Peft;

/// <summary>Options of a BitFit adapter (<see cref="BitFitAttribute"/>): none beyond its targets, on linear layers and norms
/// with a bias.</summary>
public sealed record BitFitOptions : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => BitFitMethod.Instance;

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if ((layer.Kind & (PeftLayerKind.Linear | PeftLayerKind.Norm)) == 0)
        {
            throw new PeftConfigurationException(
                $"BitFit adapter '{adapterName}'{layer.Where} needs a Linear layer or a norm with a bias, not a {layer.Kind} layer; target the model's linear layers and norms.",
                layer.MemberName, adapterName);
        }

        if (!layer.HasBias)
        {
            throw new PeftConfigurationException(
                $"BitFit adapter '{adapterName}'{layer.Where}: the {layer.Kind} layer has no bias, and BitFit trains existing biases only. " +
                "Leave the layer out of the targets (exclude_modules), or build it with a bias (nn.Linear(in, out, hasBias: true), LayerNorm(d, bias: true)).",
                layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new BitFitAdapter(adapterName, layer, this);
}
