using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One named adapter on an <see cref="AdaptedLayer"/>: it owns its parameters (registered on this module under PEFT's names
/// relative to the layer) and says what it does through capability interfaces: <see cref="IAdditiveAdapter"/>,
/// <see cref="ILowRankAdapter"/>, <see cref="IScalingAdapter"/>, <see cref="IRowRescalingAdapter"/>, <see cref="IWeightRewritingAdapter"/>,
/// <see cref="IParameterOverrideAdapter"/>, <see cref="IPrefixAdapter"/>, and <see cref="IMergeableAdapter"/> when its
/// effect can be merged into the base weights.
/// </summary>
/// <remarks>
/// Adapters are registered on their layer as child modules named by <see cref="AdapterName"/>, so an adapter <c>default</c>
/// on <c>q_proj</c> yields state-dict keys such as <c>q_proj.default.lora_A.weight</c>; PEFT's file key drops the adapter
/// name (<see cref="PeftTensors"/>). A new method derives from this class in its own folder (docs/ARCHITECTURE.md).
/// </remarks>
public abstract class PeftAdapter : nn.Module
{
    /// <summary>Initialises the common state and validates the adapter name.</summary>
    /// <param name="adapterName">The adapter name: non-empty, without '.', not "weight" or "bias".</param>
    /// <param name="layer">The layer the adapter is created for.</param>
    /// <exception cref="PeftConfigurationException">The name or sizes are invalid.</exception>
    protected PeftAdapter(string adapterName, PeftLayerInfo layer)
        : base(adapterName ?? string.Empty)
    {
        ArgumentNullException.ThrowIfNull(layer);
        AdapterNameRules.Validate(adapterName, layer.MemberName, AdaptedLayer.WeightName, AdaptedLayer.BiasName);
        if (layer.InFeatures <= 0 || layer.OutFeatures <= 0)
        {
            throw new PeftConfigurationException(
                $"Adapter '{adapterName}'{layer.Where} needs positive layer sizes, got {layer.InFeatures} and {layer.OutFeatures}.",
                layer.MemberName, adapterName);
        }

        AdapterName = adapterName!;
        Layer = layer;
    }

    /// <summary>The adapter name (PEFT's adapter_name); also the child-module name on the layer.</summary>
    public string AdapterName { get; }

    /// <summary>The layer the adapter was created for.</summary>
    public PeftLayerInfo Layer { get; }

    /// <summary>The member of the layer this adapter was created for, when known (used in messages).</summary>
    public string? MemberName => Layer.MemberName;

    /// <summary>The layer's input size (<see cref="PeftLayerInfo.InFeatures"/>).</summary>
    public long InFeatures => Layer.InFeatures;

    /// <summary>The layer's output size (<see cref="PeftLayerInfo.OutFeatures"/>).</summary>
    public long OutFeatures => Layer.OutFeatures;

    /// <summary>The adapter's method.</summary>
    public PeftMethod Method => Config.Method;

    /// <summary>The options the adapter was created with.</summary>
    public abstract PeftAdapterOptions Config { get; }

    /// <summary>True while the adapter's effect is merged into the layer's base parameters.</summary>
    public bool Merged { get; internal set; }

    /// <summary>The number of adapter parameter elements that train when the adapter is active (its
    /// <see cref="FrozenParameters"/> excluded).</summary>
    public long TrainableParameterCount
    {
        get
        {
            var frozen = new HashSet<Parameter>(FrozenParameters(), ReferenceEqualityComparer.Instance);
            long n = 0;
            foreach (var (_, p) in PeftTensors())
            {
                if (!frozen.Contains(p)) n += p.numel();
            }

            return n;
        }
    }

    /// <summary>
    /// The adapter's frozen tensors: parameters it registers and saves among its <see cref="PeftTensors"/> (so they move and
    /// convert with the layer, belong to the adapter's file and are left out of base checkpoints) but that never train, whether
    /// the adapter is active or not (SVFit's singular vectors, LoLDU's triangular factors: fixed at initialisation and not
    /// re-derivable bit for bit from the base). <see cref="PeftModel.ApplyTrainability"/> keeps them at
    /// <c>requires_grad = false</c>. Empty by default.
    /// </summary>
    /// <returns>The frozen parameters (the current objects, after any move).</returns>
    public virtual IEnumerable<Parameter> FrozenParameters() => Array.Empty<Parameter>();

    /// <summary>
    /// The adapter's tensors under Hugging Face PEFT's names relative to the layer (for example <c>lora_A.weight</c>,
    /// <c>lokr_w1</c>, <c>ia3_l</c>), in PEFT's order: what an adapter file holds for this layer.
    /// </summary>
    /// <returns>(PEFT name, parameter) pairs.</returns>
    public abstract IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors();

    /// <summary>
    /// Records the device of the adapter's parameters as the module's device: TorchSharp's <c>to(deviceType)</c> skips a
    /// module whose recorded device already equals the target, so a module created directly on an accelerator must say so.
    /// </summary>
    /// <param name="tensor">A parameter of the adapter.</param>
    protected void TrackDevice(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        _deviceType = tensor.device_type;
        _deviceIndex = tensor.device_index;
    }

    /// <summary>Creates a parameter <c>[shape]</c> on the layer's device and dtype, outside any dispose scope, and
    /// registers it under <paramref name="name"/>.</summary>
    /// <param name="name">The registered name.</param>
    /// <param name="shape">The shape.</param>
    /// <returns>The (uninitialised) parameter.</returns>
    protected Parameter CreateParameter(string name, params long[] shape)
    {
        var p = nn.Parameter(torch.empty(shape, dtype: Layer.DType, device: Layer.Device));
        p.DetachFromDisposeScope();
        register_parameter(name, p);
        return p;
    }

    /// <summary>
    /// Replaces the parameter registered under <paramref name="name"/> by a new one holding <paramref name="value"/> (its shape
    /// may differ), in the same registration slot: for an adapter whose sizes are decided by its initialisation from the base
    /// (<see cref="IBaseInitializedAdapter"/>: SVFit's rank chosen by the weight's spectrum). Call it from the initialisation,
    /// before an optimizer holds the old parameter; the old one is disposed.
    /// </summary>
    /// <param name="name">The registered name.</param>
    /// <param name="value">The new values, converted to the layer's dtype and device.</param>
    /// <returns>The new parameter.</returns>
    /// <exception cref="InvalidOperationException">No parameter is registered under that name.</exception>
    protected Parameter ReplaceParameter(string name, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (!_internal_params.TryGetValue(name, out var old))
        {
            throw new InvalidOperationException($"Adapter '{AdapterName}' has no parameter '{name}' to replace.");
        }

        Parameter p;
        using (torch.no_grad())
        {
            p = nn.Parameter(value.to(old.dtype, old.device).contiguous().clone(), old.requires_grad);
        }

        p.DetachFromDisposeScope();
        _internal_params[name] = p;
        old.Dispose();
        return p;
    }

    /// <summary>The parameter registered on this module under <paramref name="name"/> (after a move, for cached fields).</summary>
    /// <param name="name">The registered name.</param>
    /// <returns>The parameter, or null.</returns>
    protected Parameter? RegisteredParameter(string name) => _internal_params.TryGetValue(name, out var p) ? p : null;

    /// <summary>Components are registered explicitly; TorchSharp's reflection-based registration is not used.</summary>
    protected override void RegisterComponents()
    {
    }
}
