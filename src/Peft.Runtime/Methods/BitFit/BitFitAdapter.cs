using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A BitFit adapter: a trainable copy of the layer's bias, <c>bitfit_bias</c> <c>[out]</c>, that the layer runs with while the
/// adapter is active (<see cref="IBiasOverrideAdapter"/>: a linear layer computes <c>x Wᵀ + b'</c> in its one base product, a
/// norm normalises with <c>b'</c>). The copy starts equal to the bias (<see cref="InitializeFromBase"/>). Merging writes it into
/// the bias and keeps the original, which unmerging writes back (exact).
/// </summary>
public sealed class BitFitAdapter : PeftAdapter, IBiasOverrideAdapter, IBaseInitializedAdapter
{
    /// <summary>The parameter's name, also the file's tensor name.</summary>
    internal const string BiasName = "bitfit_bias";

    private Parameter _bias;
    private Tensor? _original;

    /// <summary>Creates the adapter; the copy holds zeros until the layer initialises it from its bias, or a file's values are
    /// loaded into it.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer (a linear layer or a norm, with a bias).</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name is invalid or the layer has no bias.</exception>
    public BitFitAdapter(string adapterName, PeftLayerInfo layer, BitFitOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _bias = CreateParameter(BiasName, layer.OutFeatures);
        using (no_grad())
        {
            _bias.zero_();
        }

        TrackDevice(_bias);
    }

    /// <summary>The options the adapter was created with.</summary>
    public BitFitOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The trained bias <c>[out]</c> the layer runs with while the adapter is active.</summary>
    public Tensor Bias => _bias;

    /// <summary>Copies the layer's current bias into the adapter.</summary>
    /// <param name="layer">The layer's parameters.</param>
    /// <exception cref="InvalidOperationException">The layer has no bias.</exception>
    public void InitializeFromBase(LayerParameters layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        var bias = layer.Bias ?? throw NoBias();
        using var noGrad = no_grad();
        _bias.copy_(bias);
    }

    /// <summary>Writes the trained bias into the layer and keeps the layer's own for <see cref="UnmergeFrom"/>.</summary>
    /// <param name="target">The layer's parameters.</param>
    /// <exception cref="InvalidOperationException">Already merged, or the layer has no bias.</exception>
    public void MergeInto(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        var bias = target.Bias ?? throw NoBias();
        if (_original is not null)
        {
            throw new InvalidOperationException($"BitFit adapter '{AdapterName}'{Layer.Where} is already merged; unmerge it first.");
        }

        _original = bias.detach().clone().DetachFromDisposeScope();
        bias.copy_(_bias);
    }

    /// <summary>Writes the layer's own bias, kept by <see cref="MergeInto"/>, back (exact).</summary>
    /// <param name="target">The merged parameters.</param>
    /// <exception cref="InvalidOperationException">The adapter was not merged by this instance.</exception>
    public void UnmergeFrom(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (_original is null)
        {
            throw new InvalidOperationException(
                $"BitFit adapter '{AdapterName}'{Layer.Where} holds no original bias to restore: it was not merged by this adapter (a merged model loaded from disk cannot be unmerged; reload the base model).");
        }

        (target.Bias ?? throw NoBias()).copy_(_original);
        _original.Dispose();
        _original = null;
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (BiasName, _bias);
    }

    /// <summary>Releases the kept original bias with the module.</summary>
    /// <param name="disposing">True when called from <see cref="IDisposable.Dispose"/>.</param>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _original?.Dispose();
            _original = null;
        }

        base.Dispose(disposing);
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameter.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _bias = RegisteredParameter(BiasName)!;
    }

    private InvalidOperationException NoBias()
        => new($"BitFit adapter '{AdapterName}'{Layer.Where}: the layer has no bias to train or merge into; BitFit needs a layer built with a bias.");
}
