namespace Peft;

/// <summary>Options of an SSF adapter (<see cref="SSFAttribute"/>): none beyond its targets, on linear layers and norms.</summary>
public sealed record SSFOptions : PeftAdapterOptions
{
    /// <summary>The standard deviation of γ's and β's initial draws around 1 and 0 (the paper's code: 0.02).</summary>
    public const double InitStd = 0.02;

    /// <inheritdoc />
    public override PeftMethod Method => SSFMethod.Instance;

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if ((layer.Kind & (PeftLayerKind.Linear | PeftLayerKind.Norm)) == 0)
        {
            throw new PeftConfigurationException(
                $"SSF adapter '{adapterName}'{layer.Where} needs a Linear layer or a norm, not a {layer.Kind} layer; SSF scales and shifts the output features of linear layers and norms.",
                layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new SSFAdapter(adapterName, layer, this);
}
