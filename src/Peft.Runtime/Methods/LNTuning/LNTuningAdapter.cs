using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A LayerNorm-tuning adapter as in Hugging Face PEFT (<c>ln_tuning/layer.py</c>): a trainable copy of the norm's weight and
/// bias, in a child module <c>ln_tuning_layers</c> (PEFT deep-copies the norm there), that the norm runs with while the adapter
/// is active. The copy starts equal to the norm (<see cref="InitializeFromBase"/>). Merging writes the copy into the norm and
/// keeps the original parameters, which unmerging writes back, so unmerge is exact.
/// </summary>
public sealed class LNTuningAdapter : PeftAdapter, IParameterOverrideAdapter, IBaseInitializedAdapter
{
    /// <summary>The child module holding the copy (PEFT's <c>ln_tuning_layers</c>).</summary>
    internal const string CopyName = "ln_tuning_layers";

    /// <summary>PEFT's saved name of the copied weight.</summary>
    internal const string WeightName = CopyName + ".weight";

    /// <summary>PEFT's saved name of the copied bias.</summary>
    internal const string BiasName = CopyName + ".bias";

    private readonly NormCopy _copy;
    private Tensor? _originalWeight;
    private Tensor? _originalBias;

    /// <summary>Creates the adapter on a norm layer; the copy holds ones (and zeros) until the layer initialises it from its
    /// parameters, or a file's values are loaded into it.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The norm layer.</param>
    /// <param name="options">The options.</param>
    /// <exception cref="PeftConfigurationException">The name is invalid or the layer is not a norm.</exception>
    public LNTuningAdapter(string adapterName, PeftLayerInfo layer, LNTuningOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _copy = new NormCopy(layer);
        register_module(CopyName, _copy);
        TrackDevice(_copy.Weight);
    }

    /// <summary>The options the adapter was created with.</summary>
    public LNTuningOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The trained weight the norm runs with while the adapter is active.</summary>
    public Tensor Weight => _copy.Weight;

    /// <summary>The trained bias, or null when the norm has none.</summary>
    public Tensor? Bias => _copy.Bias;

    /// <summary>Copies the norm's current weight (and bias) into the adapter, as PEFT's deep copy does.</summary>
    /// <param name="layer">The norm's parameters.</param>
    public void InitializeFromBase(LayerParameters layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var noGrad = no_grad();
        _copy.Weight.copy_(layer.Weight);
        if (_copy.Bias is { } bias && layer.Bias is not null)
        {
            bias.copy_(layer.Bias);
        }
    }

    /// <summary>Writes the trained copy into the norm and keeps the norm's own values for <see cref="UnmergeFrom"/>.</summary>
    /// <param name="target">The norm's parameters.</param>
    /// <exception cref="InvalidOperationException">The adapter is already merged, or the norm's bias does not match the copy's.</exception>
    public void MergeInto(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (_originalWeight is not null)
        {
            throw new InvalidOperationException($"LNTuning adapter '{AdapterName}'{Layer.Where} is already merged; unmerge it first.");
        }

        if ((target.Bias is null) != (_copy.Bias is null))
        {
            throw new InvalidOperationException(
                $"LNTuning adapter '{AdapterName}'{Layer.Where} {(_copy.Bias is null ? "has no bias but the norm has one" : "has a bias but the norm has none")}; it was made for another norm.");
        }

        _originalWeight = target.Weight.detach().clone().DetachFromDisposeScope();
        _originalBias = target.Bias?.detach().clone().DetachFromDisposeScope();
        target.Weight.copy_(_copy.Weight);
        if (target.Bias is not null)
        {
            target.Bias.copy_(_copy.Bias!);
        }
    }

    /// <summary>Writes the norm's own values, kept by <see cref="MergeInto"/>, back (exact).</summary>
    /// <param name="target">The merged parameters.</param>
    /// <exception cref="InvalidOperationException">The adapter was not merged by this instance.</exception>
    public void UnmergeFrom(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (_originalWeight is null)
        {
            throw new InvalidOperationException(
                $"LNTuning adapter '{AdapterName}'{Layer.Where} holds no original parameters to restore: it was not merged by this adapter (a merged model loaded from disk cannot be unmerged; reload the base model).");
        }

        target.Weight.copy_(_originalWeight);
        if (target.Bias is not null && _originalBias is not null)
        {
            target.Bias.copy_(_originalBias);
        }

        ReleaseOriginals();
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (WeightName, _copy.Weight);
        if (_copy.Bias is { } bias)
        {
            yield return (BiasName, bias);
        }
    }

    /// <summary>Releases the kept original parameters with the module.</summary>
    /// <param name="disposing">True when called from <see cref="IDisposable.Dispose"/>.</param>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            ReleaseOriginals();
        }

        base.Dispose(disposing);
    }

    private void ReleaseOriginals()
    {
        _originalWeight?.Dispose();
        _originalBias?.Dispose();
        _originalWeight = null;
        _originalBias = null;
    }

    /// <summary>PEFT's <c>ln_tuning_layers</c>: the copied <c>weight</c> and <c>bias</c>, registered under those names.</summary>
    private sealed class NormCopy : nn.Module
    {
        public NormCopy(PeftLayerInfo layer)
            : base(CopyName)
        {
            var weight = nn.Parameter(torch.ones(layer.InFeatures, dtype: layer.DType, device: layer.Device));
            weight.DetachFromDisposeScope();
            register_parameter("weight", weight);
            if (layer.HasBias)
            {
                var bias = nn.Parameter(torch.zeros(layer.InFeatures, dtype: layer.DType, device: layer.Device));
                bias.DetachFromDisposeScope();
                register_parameter("bias", bias);
            }
        }

        public Parameter Weight => _internal_params["weight"];

        public Parameter? Bias => _internal_params.TryGetValue("bias", out var b) ? b : null;

        protected override void RegisterComponents()
        {
        }
    }
}
