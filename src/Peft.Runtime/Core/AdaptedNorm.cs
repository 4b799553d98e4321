using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A normalisation layer user code can make adaptable: a module that normalises with a weight (and optionally a bias) it
/// is given, so <see cref="AdaptedNorm"/> can run it with an adapter's parameters (LayerNorm tuning). Llama's RMSNorm
/// implements it; TorchSharp's <see cref="LayerNorm"/> is wrapped directly.
/// </summary>
public interface IAdaptableNorm
{
    /// <summary>The norm's weight (elementwise scale).</summary>
    Parameter Weight { get; }

    /// <summary>The norm's bias, or null.</summary>
    Parameter? Bias { get; }

    /// <summary>Normalises <paramref name="input"/> with the given parameters (the module's own forward uses its own).</summary>
    /// <param name="input">The input.</param>
    /// <param name="weight">The weight to use.</param>
    /// <param name="bias">The bias to use, or null.</param>
    /// <returns>The normalised input.</returns>
    Tensor Normalize(Tensor input, Tensor weight, Tensor? bias);
}

/// <summary>
/// A normalisation layer (TorchSharp's <see cref="LayerNorm"/>, or any <see cref="IAdaptableNorm"/>) with named adapters. It
/// registers the norm's <c>weight</c> and <c>bias</c> under their own names, so base checkpoint keys are unchanged.
/// </summary>
/// <remarks>With a live parameter-override adapter (<see cref="IParameterOverrideAdapter"/>, LayerNorm tuning) the norm runs
/// with that adapter's weight and bias, with a live bias override (<see cref="IBiasOverrideAdapter"/>, BitFit) with its own
/// weight and that bias; otherwise with its own. One replacing adapter is active at a time, as in PEFT. Live feature
/// scale-and-shift adapters (<see cref="IFeatureAffineAdapter"/>, SSF) then give <c>γ ⊙ norm(x) + β</c>: folded into the
/// LayerNorm's weight and bias (<c>γ ⊙ w</c>, <c>γ ⊙ b + β</c>, so one <c>layer_norm</c> runs), or applied to a custom norm's
/// output.</remarks>
public sealed class AdaptedNorm : AdaptedLayer
{
    private readonly long[] _normalizedShape;
    private readonly double _eps;
    private readonly IAdaptableNorm? _custom;
    private Parameter _weight;
    private Parameter? _bias;
    private IParameterOverrideAdapter? _override;
    private IBiasOverrideAdapter? _biasOverride;
    private IFeatureAffineAdapter[] _affine = Array.Empty<IFeatureAffineAdapter>();

    private AdaptedNorm(Parameter weight, Parameter? bias, long[] normalizedShape, double eps, IAdaptableNorm? custom, string memberName)
        : base(nameof(AdaptedNorm), memberName)
    {
        _weight = weight;
        _bias = bias;
        _normalizedShape = normalizedShape;
        _eps = eps;
        _custom = custom;
        _deviceType = weight.device_type;
        _deviceIndex = weight.device_index;
        register_parameter(WeightName, weight);
        if (bias is not null)
        {
            register_parameter(BiasName, bias);
        }
    }

    /// <summary>Wraps the norm held by a member (<see cref="PeftLayers.Wrap"/> calls this for norms).</summary>
    /// <param name="norm">A <see cref="LayerNorm"/> with elementwise affine parameters, an <see cref="IAdaptableNorm"/>
    /// module, or an <see cref="AdaptedNorm"/> (returned as is).</param>
    /// <param name="memberName">The member name, used in messages.</param>
    /// <returns>The wrapper.</returns>
    /// <exception cref="PeftConfigurationException">The module is null, not a norm, or has no weight.</exception>
    public static AdaptedNorm Wrap(nn.Module<Tensor, Tensor>? norm, string memberName)
    {
        ArgumentNullException.ThrowIfNull(memberName);
        switch (norm)
        {
            case AdaptedNorm wrapped:
                return wrapped;
            case LayerNorm layerNorm:
                {
                    var weight = layerNorm.weight;
                    if (weight is null)
                    {
                        throw new PeftConfigurationException(
                            $"Member '{memberName}' holds a LayerNorm without elementwise affine parameters; it has nothing to tune. Create it with elementwise_affine: true.",
                            memberName, null);
                    }

                    if (weight.Dimensions != 1)
                    {
                        throw new PeftConfigurationException(
                            $"Member '{memberName}' holds a LayerNorm over [{string.Join(", ", layerNorm.normalized_shape)}]; adapters support norms over the last dimension only (a normalized_shape of one size, as in transformers).",
                            memberName, null);
                    }

                    var wrapper = new AdaptedNorm(weight, layerNorm.bias, layerNorm.normalized_shape.ToArray(), layerNorm.eps, null, memberName);

                    // The wrapper now owns the parameters; the LayerNorm object is dropped by the caller and its finalizer
                    // must never dispose them.
                    GC.SuppressFinalize(layerNorm);
                    return wrapper;
                }

            case IAdaptableNorm custom when custom.Weight.Dimensions != 1:
                throw new PeftConfigurationException(
                    $"Member '{memberName}' holds a {norm.GetType().Name} whose weight is [{string.Join(", ", custom.Weight.shape)}]; adapters support norms over the last dimension only (a 1-d weight).",
                    memberName, null);
            case IAdaptableNorm custom:
                // The custom module stays alive (its Normalize runs the math); the wrapper owns the parameters.
                GC.SuppressFinalize(norm);
                return new AdaptedNorm(custom.Weight, custom.Bias, custom.Weight.shape, 0, custom, memberName);
            default:
                throw PeftLayers.CannotWrap(norm, memberName, "a normalisation layer (nn.LayerNorm(dim), or a module implementing IAdaptableNorm)");
        }
    }

    /// <inheritdoc />
    public override PeftLayerKind Kind => PeftLayerKind.Norm;

    /// <summary>The norm's weight, registered as <c>weight</c>.</summary>
    public override Parameter Weight => _weight;

    /// <summary>The norm's bias, registered as <c>bias</c>, or null.</summary>
    public override Parameter? Bias => _bias;

    /// <summary>The number of normalised elements.</summary>
    public override long InFeatures => _weight.numel();

    /// <summary>The number of normalised elements.</summary>
    public override long OutFeatures => _weight.numel();

    /// <summary>Normalises with the live override's parameters, or with the norm's own.</summary>
    /// <param name="input">The input.</param>
    /// <returns>The normalised input.</returns>
    public override Tensor forward(Tensor input)
    {
        EnsureUnmergedWhenDisabled();
        var live = _override;
        var weight = live?.Weight ?? _weight;
        var bias = _biasOverride?.Bias ?? (live is null ? _bias : live.Bias);
        if (_affine.Length == 0)
        {
            return _custom is not null
                ? _custom.Normalize(input, weight, bias)
                : F.layer_norm(input, _normalizedShape, weight, bias, _eps);
        }

        if (_custom is not null)
        {
            var y = _custom.Normalize(input, weight, bias);
            foreach (var affine in _affine)
            {
                var next = y * affine.Scale;
                y.Dispose();
                y = next.add_(affine.Shift);
            }

            return y;
        }

        // γ ⊙ (x̂ ⊙ w + b) + β = x̂ ⊙ (γ ⊙ w) + (γ ⊙ b + β): d-sized work, then one layer_norm.
        Tensor w = weight.alias(), b = bias?.alias() ?? torch.zeros_like(weight);
        foreach (var affine in _affine)
        {
            var nextW = w * affine.Scale;
            var nextB = (b * affine.Scale).add_(affine.Shift);
            w.Dispose();
            b.Dispose();
            (w, b) = (nextW, nextB);
        }

        using (w)
        using (b)
        {
            return F.layer_norm(input, _normalizedShape, w, b, _eps);
        }
    }

    /// <inheritdoc />
    private protected override void ValidateActiveSet(IReadOnlyList<PeftAdapter> active)
    {
        var replacing = active.Where(a => a is IParameterOverrideAdapter or IBiasOverrideAdapter).ToList();
        if (replacing.Count > 1)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' is a norm: only one adapter can replace its parameters at a time, but {string.Join(", ", replacing.Select(a => $"'{a.AdapterName}'"))} were requested (PEFT allows one too).",
                MemberName, replacing[1].AdapterName);
        }
    }

    /// <inheritdoc />
    private protected override void OnLiveChanged()
    {
        var live = LiveAdapters;
        _override = live.OfType<IParameterOverrideAdapter>().FirstOrDefault();
        _biasOverride = live.OfType<IBiasOverrideAdapter>().FirstOrDefault();
        _affine = live.OfType<IFeatureAffineAdapter>().ToArray();
        var other = live.FirstOrDefault(a => a is not (IParameterOverrideAdapter or IBiasOverrideAdapter or IFeatureAffineAdapter));
        if (other is not null)
        {
            throw new PeftConfigurationException(
                $"Adapter '{other.AdapterName}' ({other.Method.Name}) on member '{MemberName}' has no capability a norm layer can apply.",
                MemberName, other.AdapterName);
        }
    }

    /// <summary>Moves or converts the layer, then refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _weight = _internal_params[WeightName];
        _bias = _internal_params.TryGetValue(BiasName, out var b) ? b : null;
    }
}
