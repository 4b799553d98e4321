using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Wraps a layer with the adapter wrapper for its kind: <see cref="AdaptedLinear"/> for a <see cref="Linear"/>,
/// <see cref="AdaptedEmbedding"/> for an <see cref="Embedding"/>, <see cref="AdaptedNorm"/> for a <see cref="LayerNorm"/>
/// or an <see cref="IAdaptableNorm"/>. Generated code calls <see cref="Wrap"/> for every adapted member and then
/// <see cref="AdaptedLayer.WithAdapter"/> for each of its adapters, so it needs to know neither the methods nor the wrappers.
/// </summary>
public static class PeftLayers
{
    /// <summary>Wraps <paramref name="layer"/> (returned as is when it already is a wrapper).</summary>
    /// <param name="layer">The member's layer.</param>
    /// <param name="memberName">The member name, used in messages.</param>
    /// <returns>The wrapper, which owns the layer's parameters from now on.</returns>
    /// <exception cref="PeftConfigurationException">The layer is null or of a kind no wrapper exists for.</exception>
    public static AdaptedLayer Wrap(nn.Module<Tensor, Tensor>? layer, string memberName) => KindOf(layer) switch
    {
        PeftLayerKind.Linear => AdaptedLinear.Wrap(layer, memberName),
        PeftLayerKind.Embedding => AdaptedEmbedding.Wrap(layer, memberName),
        PeftLayerKind.Norm => AdaptedNorm.Wrap(layer, memberName),
        _ => throw CannotWrap(layer, memberName, "a Linear, Embedding or LayerNorm layer (or a module implementing IAdaptableNorm)"),
    };

    /// <summary>The kind of a layer: what wrapper <see cref="Wrap"/> would use (None when none applies).</summary>
    /// <param name="module">A module, possibly already wrapped.</param>
    /// <returns>The kind.</returns>
    public static PeftLayerKind KindOf(nn.Module? module) => module switch
    {
        AdaptedLayer adapted => adapted.Kind,
        Linear => PeftLayerKind.Linear,
        Embedding => PeftLayerKind.Embedding,
        LayerNorm or IAdaptableNorm => PeftLayerKind.Norm,
        _ => PeftLayerKind.None,
    };

    /// <summary>What an adapter on <paramref name="module"/> would be created for (its kind, sizes, device, dtype), without
    /// wrapping it.</summary>
    /// <param name="module">A Linear, Embedding, LayerNorm, <see cref="IAdaptableNorm"/> or wrapper.</param>
    /// <param name="memberName">For messages.</param>
    /// <returns>The layer description.</returns>
    /// <exception cref="PeftConfigurationException">The module is of no adaptable kind.</exception>
    public static PeftLayerInfo InfoOf(nn.Module module, string memberName)
    {
        ArgumentNullException.ThrowIfNull(module);
        switch (module)
        {
            case AdaptedLayer adapted:
                return adapted.Info with { MemberName = memberName };
            case Linear linear:
                {
                    var w = linear.weight!;
                    return new PeftLayerInfo(PeftLayerKind.Linear, w.shape[1], w.shape[0], linear.bias is not null, w.device, w.dtype, memberName);
                }

            case Embedding embedding:
                {
                    var w = embedding.weight!;
                    return new PeftLayerInfo(PeftLayerKind.Embedding, w.shape[0], w.shape[1], false, w.device, w.dtype, memberName);
                }

            case LayerNorm norm when norm.weight is not null:
                return new PeftLayerInfo(PeftLayerKind.Norm, norm.weight.numel(), norm.weight.numel(), norm.bias is not null, norm.weight.device, norm.weight.dtype, memberName);
            case IAdaptableNorm custom:
                return new PeftLayerInfo(PeftLayerKind.Norm, custom.Weight.numel(), custom.Weight.numel(), custom.Bias is not null, custom.Weight.device, custom.Weight.dtype, memberName);
            default:
                throw CannotWrap(module as nn.Module<Tensor, Tensor>, memberName, "a Linear, Embedding or LayerNorm layer");
        }
    }

    /// <summary>The message for a member that cannot be wrapped as <paramref name="expected"/>.</summary>
    internal static PeftConfigurationException CannotWrap(nn.Module? layer, string memberName, string expected) => layer is null
        ? new PeftConfigurationException(
            $"Member '{memberName}' is null when InitializePeft() runs. Adapter attributes wrap the layer the member holds: assign it before " +
            $"InitializePeft() is called, e.g. in the field initializer ('{memberName} = Linear(inFeatures, outFeatures);').",
            memberName, null)
        : new PeftConfigurationException(
            $"Member '{memberName}' holds a {layer.GetType().FullName}, but the adapter needs {expected}. Remove the attribute from " +
            $"'{memberName}', or put it on a member that holds such a layer.",
            memberName, null);
}
