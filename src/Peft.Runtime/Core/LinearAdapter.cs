using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One named adapter on an <see cref="AdaptedLinear"/> layer. It owns its parameters (registered on this module)
/// and computes its contribution to the layer output without forming the out × in update matrix.
/// </summary>
/// <remarks>
/// Adapters are registered on their layer as child modules named by <see cref="AdapterName"/>, so an adapter
/// <c>default</c> on <c>q_proj</c> yields state-dict keys such as <c>q_proj.default.lora_A.weight</c>.
/// </remarks>
public abstract class LinearAdapter : nn.Module
{
    /// <summary>Initialises the common state and validates the adapter name.</summary>
    /// <param name="adapterName">The adapter name: non-empty, without '.', not "weight" or "bias".</param>
    /// <param name="inFeatures">The layer's input size.</param>
    /// <param name="outFeatures">The layer's output size.</param>
    /// <param name="memberName">The member the layer belongs to, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">The name or sizes are invalid.</exception>
    protected LinearAdapter(string adapterName, long inFeatures, long outFeatures, string? memberName)
        : base(adapterName ?? string.Empty)
    {
        AdapterNameRules.Validate(adapterName, memberName, AdaptedLinear.WeightName, AdaptedLinear.BiasName);
        if (inFeatures <= 0 || outFeatures <= 0)
        {
            throw new PeftConfigurationException(
                $"Adapter '{adapterName}'{AdapterNameRules.Describe(memberName)} needs positive layer sizes, got in_features={inFeatures}, out_features={outFeatures}.",
                memberName, adapterName);
        }

        AdapterName = adapterName!;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        MemberName = memberName;
    }

    /// <summary>The adapter name (PEFT's adapter_name); also the child-module name on the layer.</summary>
    public string AdapterName { get; }

    /// <summary>The member of the layer this adapter was created for, when known (used in messages).</summary>
    public string? MemberName { get; }

    /// <summary>The layer's input size.</summary>
    public long InFeatures { get; }

    /// <summary>The layer's output size.</summary>
    public long OutFeatures { get; }

    /// <summary>The adapter's method.</summary>
    public abstract PeftMethod Method { get; }

    /// <summary>The options the adapter was created with.</summary>
    public abstract PeftAdapterOptions Config { get; }

    /// <summary>True while the adapter's update is merged into the layer's base weight.</summary>
    public bool Merged { get; internal set; }

    /// <summary>The number of adapter parameter elements (trainable when the adapter is active).</summary>
    public long TrainableParameterCount
    {
        get
        {
            long n = 0;
            foreach (var (_, p) in PeftTensors())
            {
                n += p.numel();
            }

            return n;
        }
    }

    /// <summary>
    /// Adds the adapter's contribution <c>Δ(input)</c> to <paramref name="output"/> in place. <see cref="AdaptedLinear"/>
    /// passes a 2-D input <c>[N, in]</c> and a contiguous 2-D output <c>[N, out]</c>; other leading shapes are
    /// flattened here. Dropout (if any) applies only in training mode.
    /// </summary>
    /// <param name="input">The layer input <c>[..., in]</c>.</param>
    /// <param name="output">The layer output <c>[..., out]</c>, updated in place.</param>
    public abstract void AddTo(Tensor input, Tensor output);

    /// <summary>
    /// Computes the dense update <c>ΔW</c> of shape <c>[out, in]</c> (scaling included), the amount merged into the base
    /// weight. The caller owns (and disposes) the result; call under <c>torch.no_grad()</c> unless gradients are wanted.
    /// </summary>
    /// <returns>A new tensor <c>[out, in]</c>.</returns>
    public abstract Tensor DeltaWeight();

    /// <summary>
    /// The adapter's tensors under Hugging Face PEFT's names relative to the layer (for example
    /// <c>lora_A.weight</c>, <c>lokr_w1</c>), in PEFT's order.
    /// </summary>
    /// <returns>(PEFT name, parameter) pairs.</returns>
    public abstract IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors();

    /// <summary>
    /// Records the device of the adapter's parameters as the module's device: TorchSharp's <c>to(deviceType)</c> skips a
    /// module whose recorded device already equals the target, so a module created directly on an accelerator must say so.
    /// </summary>
    /// <param name="tensor">A parameter of the adapter.</param>
    private protected void TrackDevice(Tensor tensor)
    {
        _deviceType = tensor.device_type;
        _deviceIndex = tensor.device_index;
    }

    /// <summary>Components are registered explicitly in the constructor; TorchSharp's reflection-based registration is not used.</summary>
    protected override void RegisterComponents()
    {
    }
}
