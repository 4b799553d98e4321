using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A linear layer with named adapters. It takes over the wrapped <see cref="Linear"/>'s <c>weight</c> and <c>bias</c>
/// parameters under their own names, so base checkpoint keys (<c>q_proj.weight</c>) are unchanged, and registers each adapter
/// as a child module named by the adapter.
/// </summary>
/// <remarks>
/// <para>Forward, for the live adapters (active, unmerged, enabled), by capability:</para>
/// <list type="number">
/// <item>input scaling (<see cref="IScalingAdapter"/> with <see cref="IScalingAdapter.ScalesInput"/>): <c>x' = x ⊙ Π l</c>;</item>
/// <item>the base product, once: <c>linear(x', W, b)</c>, where weight-rewriting adapters (<see cref="IWeightRewritingAdapter"/>,
/// HiRA) replace <c>W</c> by <c>W' = R_k(… R_1(W))</c> so the update costs no second full-size product; with row-rescaling adapters (<see cref="IRowRescalingAdapter"/>,
/// DoRA) <c>(1 + Σ(c_k − 1)) ⊙ W x' + Σ c_k ⊙ ΔW_k x' + b</c>;</item>
/// <item>additive updates (<see cref="IAdditiveAdapter"/>: LoRA, LoKr), each accumulated into the output in place, from the
/// layer's input <c>x</c>, never forming the <c>out × in</c> update;</item>
/// <item>output scaling (<see cref="IScalingAdapter"/>): <c>y ⊙ Π l</c>;</item>
/// <item>feature scale-and-shift (<see cref="IFeatureAffineAdapter"/>, SSF): <c>y ← γ ⊙ y + β</c>, each in activation order.</item>
/// </list>
/// <para>A live bias override (<see cref="IBiasOverrideAdapter"/>, BitFit) replaces <c>b</c> in step 2; at most one
/// parameter-replacing adapter is live.</para>
/// <para>One live low-rank adapter (LoRA, or DoRA sharing the base product) can run as one fused autograd node with its own
/// backward (<see cref="LowRankLinearFunction"/>) when <see cref="FusedKernel"/> or <see cref="PeftKernels.FusedPaths"/> turns
/// it on (off by default: see <see cref="PeftKernels.FusedPaths"/>). It computes the same function as the steps above.</para>
/// <para>With adapters disabled, or none live, the forward is exactly the base <c>linear</c> (a merged layer costs the same
/// as the base layer). <see cref="AdaptedLayer.Merge"/> merges in the same order.</para>
/// </remarks>
public sealed partial class AdaptedLinear : AdaptedLayer
{
    private readonly long _in;
    private readonly long _out;
    private Parameter _weight;
    private Parameter? _bias;
    private ForwardPlan? _plan;

    private AdaptedLinear(Parameter weight, Parameter? bias, string memberName)
        : base(nameof(AdaptedLinear), memberName)
    {
        _weight = weight;
        _bias = bias;
        _out = weight.shape[0];
        _in = weight.shape[1];

        // TorchSharp's to(deviceType) skips a module whose recorded device equals the target; record the real one.
        _deviceType = weight.device_type;
        _deviceIndex = weight.device_index;
        register_parameter(WeightName, weight);
        if (bias is not null)
        {
            register_parameter(BiasName, bias);
        }
    }

    /// <summary>
    /// Wraps the <see cref="Linear"/> held by a member (<see cref="PeftLayers.Wrap"/> calls this for linear layers).
    /// </summary>
    /// <param name="layer">A <see cref="Linear"/>, or an <see cref="AdaptedLinear"/> (returned as is).</param>
    /// <param name="memberName">The member name, used in messages.</param>
    /// <returns>The wrapper, which owns the layer's weight and bias parameters from now on.</returns>
    /// <exception cref="PeftConfigurationException"><paramref name="layer"/> is null or not a linear layer.</exception>
    public static AdaptedLinear Wrap(nn.Module<Tensor, Tensor>? layer, string memberName)
    {
        ArgumentNullException.ThrowIfNull(memberName);
        switch (layer)
        {
            case AdaptedLinear adapted:
                return adapted;
            case Linear linear:
                {
                    var weight = linear.weight;
                    if (weight is null || weight.Dimensions != 2)
                    {
                        throw new PeftConfigurationException(
                            $"Member '{memberName}' holds a Linear without a 2-D weight; it cannot be adapted. Assign a layer created with nn.Linear(in, out).",
                            memberName, null);
                    }

                    var wrapper = new AdaptedLinear(weight, linear.bias, memberName);

                    // The wrapper now owns the parameters. The Linear object is dropped by the caller; make sure its
                    // finalizer can never dispose the parameters it used to hold.
                    GC.SuppressFinalize(linear);
                    return wrapper;
                }

            default:
                throw PeftLayers.CannotWrap(layer, memberName, "a TorchSharp.Modules.Linear (nn.Linear(inFeatures, outFeatures))");
        }
    }

    /// <inheritdoc />
    public override PeftLayerKind Kind => PeftLayerKind.Linear;

    /// <summary>The base weight <c>[out, in]</c>, registered as <c>weight</c>.</summary>
    public override Parameter Weight => _quantized is null ? _weight : throw QuantizedBaseError("reading the dense base weight");

    /// <summary>The base bias <c>[out]</c>, registered as <c>bias</c>, or null.</summary>
    public override Parameter? Bias => _bias;

    /// <inheritdoc />
    public override long InFeatures => _in;

    /// <summary>Whether this layer runs one live low-rank adapter through the fused kernel: null (the default) follows
    /// <see cref="PeftKernels.FusedPaths"/>, true or false decides for this layer only.</summary>
    public bool? FusedKernel { get; set; }

    /// <inheritdoc />
    public override long OutFeatures => _out;

    /// <summary>Sees each forward's input before anything else runs (<see cref="LayerInputCapture"/> sets it while it
    /// captures); null otherwise.</summary>
    internal Action<Tensor>? InputObserver { get; set; }

    /// <summary>Computes the base product plus the live adapters (see the class remarks).</summary>
    /// <param name="input">The input <c>[..., in]</c>.</param>
    /// <returns>The output <c>[..., out]</c>.</returns>
    public override Tensor forward(Tensor input)
    {
        InputObserver?.Invoke(input);
        if (Siblings is not null && TakeSiblingShare(input) is { } share)
        {
            return share;
        }

        EnsureUnmergedWhenDisabled();
        var plan = _plan;
        if (plan is null && _quantized is null)
        {
            return F.linear(input, _weight, _bias);
        }

        if (input.Dimensions == 2)
        {
            return Run(plan, input);
        }

        using var x2 = input.reshape(-1, _in);
        using var y2 = Run(plan, x2);
        var shape = input.shape;
        shape[^1] = _out;
        return y2.view(shape);
    }

    /// <inheritdoc />
    private protected override void OnLiveChanged()
    {
        var live = LiveAdapters;
        if (live.Count == 0)
        {
            _plan = null;
            return;
        }

        var plan = new ForwardPlan
        {
            Fused = live.Count == 1 ? live[0] as ILowRankFactors : null,
            InputScales = live.OfType<IScalingAdapter>().Where(a => a.ScalesInput).ToArray(),
            RowRescalers = live.OfType<IRowRescalingAdapter>().ToArray(),
            Rewriters = live.OfType<IWeightRewritingAdapter>().ToArray(),
            Additive = live.OfType<IAdditiveAdapter>().ToArray(),
            OutputScales = live.OfType<IScalingAdapter>().Where(a => !a.ScalesInput).ToArray(),
            BiasOverrides = live.OfType<IBiasOverrideAdapter>().ToArray(),
            Affine = live.OfType<IFeatureAffineAdapter>().ToArray(),
        };
        int handled = plan.InputScales.Length + plan.RowRescalers.Length + plan.Rewriters.Length + plan.Additive.Length + plan.OutputScales.Length
            + plan.BiasOverrides.Length + plan.Affine.Length;
        if (handled != live.Count)
        {
            var other = live.First(a => a is not (IScalingAdapter or IRowRescalingAdapter or IWeightRewritingAdapter or IAdditiveAdapter or IBiasOverrideAdapter or IFeatureAffineAdapter));
            throw new PeftConfigurationException(
                $"Adapter '{other.AdapterName}' ({other.Method.Name}) on member '{MemberName}' has no capability a linear layer can apply.",
                MemberName, other.AdapterName);
        }

        EnsureDenseBaseFor(plan.RowRescalers.Cast<PeftAdapter>().Concat(plan.Rewriters.Cast<PeftAdapter>()));
        if (plan.Rewriters.Length > 0 && plan.RowRescalers.Length > 0)
        {
            var rewriter = (PeftAdapter)plan.Rewriters[0];
            var rescaler = (PeftAdapter)plan.RowRescalers[0];
            throw new PeftConfigurationException(
                $"Adapters '{rewriter.AdapterName}' ({rewriter.Method.Name}) and '{rescaler.AdapterName}' ({rescaler.Method.Name}) on member '{MemberName}' cannot be live together: " +
                $"{rewriter.Method.Name} rewrites the weight element-wise and {rescaler.Method.Name} rescales its rows by their norm, and the two orders compute different functions. " +
                "Activate one of them, or merge one before activating the other.",
                MemberName, rewriter.AdapterName);
        }

        if (plan.BiasOverrides.Length > 1)
        {
            var names = string.Join(", ", plan.BiasOverrides.Select(a => $"'{((PeftAdapter)a).AdapterName}'"));
            throw new PeftConfigurationException(
                $"Adapters {names} on member '{MemberName}' each replace the layer's bias and cannot be live together (two replacements of one bias have no order). Activate one of them.",
                MemberName, ((PeftAdapter)plan.BiasOverrides[1]).AdapterName);
        }

        _plan = plan;
    }

    /// <summary>Moves or converts the layer, then refreshes the cached base parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _weight = _internal_params.TryGetValue(WeightName, out var w) ? w : _weight;
        _bias = _internal_params.TryGetValue(BiasName, out var b) ? b : null;
        RefreshResidualAfterMove(dtype);
        RebindQuantized();
    }

    private Tensor Run(ForwardPlan? plan, Tensor x) =>
        plan is null ? BaseProduct(x, _bias)
        : plan.Fused is { FactorsReady: true } fused && _quantized is null && (FusedKernel ?? PeftKernels.FusedPaths) ? RunFused(fused, x) ?? Compose(plan, x)
        : Compose(plan, x);

    /// <summary>One LoRA (or one DoRA sharing the base product) as one autograd node with its own backward
    /// (<see cref="LowRankLinearFunction"/>); null when the adapter's state needs the general path.</summary>
    private Tensor? RunFused(ILowRankFactors adapter, Tensor x)
    {
        bool training = ((nn.Module)adapter).training;
        double dropout = training ? adapter.Dropout : 0;
        if (adapter is IRowRescalingAdapter rescaling)
        {
            if (!rescaling.SharesBaseProduct)
            {
                return null;
            }

            using var scale = rescaling.RowScale(_weight);
            return LowRankLinearFunction.Apply(x, _weight, _bias, adapter.Down, adapter.Up, scale, adapter.Scaling, dropout: 0);
        }

        return LowRankLinearFunction.Apply(x, _weight, _bias, adapter.Down, adapter.Up, rowScale: null, adapter.Scaling, dropout);
    }

    private Tensor Compose(ForwardPlan plan, Tensor x)
    {
        Tensor? scaledInput = null;
        Tensor? rewritten = null;
        Tensor? y = null;
        try
        {
            var xin = x;
            if (plan.InputScales.Length > 0)
            {
                using var scale = Product(plan.InputScales);
                scaledInput = x * scale;
                xin = scaledInput;
            }

            rewritten = plan.Rewriters.Length == 0 ? null : RewrittenWeight(plan.Rewriters);
            var bias = plan.BiasOverrides.Length == 0 ? _bias : plan.BiasOverrides[0].Bias;
            y = plan.RowRescalers.Length > 0 ? RescaledBase(plan.RowRescalers, xin, bias)
                : rewritten is null ? BaseProduct(xin, bias) : F.linear(xin, rewritten, bias);
            foreach (var rewriter in plan.Rewriters)
            {
                if (!rewriter.SharesBaseProduct)
                {
                    rewriter.AddSeparately(xin, y, _weight);
                }
            }

            foreach (var adapter in plan.Additive)
            {
                adapter.AddTo(x, y);
            }

            if (plan.OutputScales.Length > 0)
            {
                using var scale = Product(plan.OutputScales);
                var scaled = y * scale;
                y.Dispose();
                y = scaled;
            }

            foreach (var affine in plan.Affine)
            {
                // (y ⊙ γ) then β in place: the product's backward keeps y and γ, not its output.
                var shifted = y * affine.Scale;
                y.Dispose();
                y = shifted.add_(affine.Shift);
            }

            var result = y;
            y = null;
            return result;
        }
        finally
        {
            y?.Dispose();
            rewritten?.Dispose();
            scaledInput?.Dispose();
        }
    }

    /// <summary><c>R_k(… R_1(W))</c> over the rewriting adapters that share the base product, in activation order; null when
    /// none does this forward.</summary>
    private Tensor? RewrittenWeight(IWeightRewritingAdapter[] rewriters)
    {
        Tensor? weight = null;
        foreach (var rewriter in rewriters)
        {
            if (rewriter.SharesBaseProduct)
            {
                var next = rewriter.EffectiveWeight(weight ?? _weight);
                weight?.Dispose();
                weight = next;
            }
        }

        return weight;
    }

    private static Tensor Product(IScalingAdapter[] scalers)
    {
        var product = scalers[0].Scale();
        for (int i = 1; i < scalers.Length; i++)
        {
            using var scale = scalers[i].Scale();
            var next = product * scale;
            product.Dispose();
            product = next;
        }

        return product;
    }

    private sealed class ForwardPlan
    {
        /// <summary>The one live adapter when it can run fused (<see cref="ILowRankFactors"/>), else null.</summary>
        public ILowRankFactors? Fused { get; init; }

        public IScalingAdapter[] InputScales { get; init; } = Array.Empty<IScalingAdapter>();

        public IRowRescalingAdapter[] RowRescalers { get; init; } = Array.Empty<IRowRescalingAdapter>();

        public IWeightRewritingAdapter[] Rewriters { get; init; } = Array.Empty<IWeightRewritingAdapter>();

        public IAdditiveAdapter[] Additive { get; init; } = Array.Empty<IAdditiveAdapter>();

        public IScalingAdapter[] OutputScales { get; init; } = Array.Empty<IScalingAdapter>();

        public IBiasOverrideAdapter[] BiasOverrides { get; init; } = Array.Empty<IBiasOverrideAdapter>();

        public IFeatureAffineAdapter[] Affine { get; init; } = Array.Empty<IFeatureAffineAdapter>();
    }
}
