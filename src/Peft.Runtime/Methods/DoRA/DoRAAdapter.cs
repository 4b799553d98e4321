using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A DoRA adapter as in Hugging Face PEFT (<c>lora/dora.py</c>): LoRA factors <c>lora_A</c>, <c>lora_B</c> and a magnitude
/// <c>lora_magnitude_vector</c> <c>[out]</c>. With <c>c = m / ‖W + s·BA‖</c> (row norms, computed without gradient as PEFT
/// detaches it), the layer computes <c>y = c ⊙ (W x + s·B A x) + b</c>; with dropout in training, PEFT's form
/// <c>y = W x + b + (c − 1) ⊙ W·drop(x) + c ⊙ s·B A drop(x)</c>. Merging writes <c>W' = c ⊙ (W + s·BA)</c> and keeps the norm
/// for an exact unmerge.
/// </summary>
public sealed class DoRAAdapter : PeftAdapter, IRowRescalingAdapter, IMergeableAdapter, IBaseInitializedAdapter, ILowRankFactors
{
    /// <summary>The magnitude's parameter name (and PEFT's saved tensor name, without <c>.weight</c>).</summary>
    internal const string MagnitudeName = "lora_magnitude_vector";

    private readonly LowRankPair _pair;
    private Parameter _magnitude;
    private Tensor? _mergedNorm;

    /// <summary>Creates a DoRA adapter; its magnitude is set from the base weight when it joins a layer
    /// (<see cref="InitializeFromBase"/>), so that it starts equal to the base layer.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The DoRA options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public DoRAAdapter(string adapterName, PeftLayerInfo layer, DoRAOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _pair = new LowRankPair(this, layer, options.AsLoRA);
        _magnitude = CreateParameter(MagnitudeName, layer.OutFeatures);
        using (no_grad())
        {
            nn.init.ones_(_magnitude);
        }

        TrackDevice(_pair.A);
    }

    /// <summary>The options the adapter was created with.</summary>
    public DoRAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The scaling s.</summary>
    public double Scaling => _pair.Scaling;

    /// <summary>The down projection A <c>[r, in]</c> (<c>lora_A.weight</c>).</summary>
    public Parameter A => _pair.A;

    /// <summary>The up projection B <c>[out, r]</c> (<c>lora_B.weight</c>).</summary>
    public Parameter B => _pair.B;

    /// <summary>The magnitude m <c>[out]</c> (<c>lora_magnitude_vector</c>).</summary>
    public Parameter Magnitude => _magnitude;

    /// <summary>The dropout probability on the adapter's input.</summary>
    public double Dropout => Options.Dropout;

    /// <inheritdoc />
    Parameter ILowRankFactors.Down => A;

    /// <inheritdoc />
    Parameter ILowRankFactors.Up => B;

    /// <summary>False in training with a positive dropout: PEFT's base term then uses the dropped-out input.</summary>
    public bool SharesBaseProduct => !(training && Options.Dropout > 0);

    /// <summary>PEFT's init: <c>m = ‖W + s·BA‖</c> per output row (<c>‖W‖</c> with the default <c>B = 0</c>).</summary>
    /// <param name="layer">The base parameters.</param>
    public void InitializeFromBase(LayerParameters layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var norm = WeightNorm(layer.Weight);
        _magnitude.copy_(norm);
    }

    /// <summary><c>c = m / ‖W + s·BA‖</c> <c>[out]</c>; the norm is computed without gradient (PEFT detaches it).</summary>
    /// <param name="weight">The base weight <c>[out, in]</c>.</param>
    /// <returns>A new tensor.</returns>
    public Tensor RowScale(Tensor weight)
    {
        using var norm = WeightNorm(weight);
        return _magnitude / norm;
    }

    /// <summary>Adds <c>s·(x Aᵀ) Bᵀ</c> in place (the layer applies the row scale).</summary>
    /// <param name="input">The layer input <c>[N, in]</c>.</param>
    /// <param name="output">The output <c>[N, out]</c>.</param>
    public void AddUpdate(Tensor input, Tensor output) => _pair.AddTo(input, output, _pair.B);

    /// <summary>Adds <c>c ⊙ s·(x Aᵀ) Bᵀ</c> in place.</summary>
    private void AddScaledUpdate(Tensor input, Tensor output, Tensor rowScale)
    {
        using var column = rowScale.unsqueeze(1);
        using var up = _pair.B * column;
        _pair.AddTo(input, output, up);
    }

    /// <summary>PEFT's training form with dropout: <c>y += (c − 1) ⊙ W·drop(x) + c ⊙ s·B A drop(x)</c>.</summary>
    /// <param name="input">The layer input <c>[N, in]</c>.</param>
    /// <param name="output">The output so far, updated in place.</param>
    /// <param name="weight">The base weight.</param>
    public void AddSeparately(Tensor input, Tensor output, Tensor weight)
    {
        using var dropped = _pair.Dropout(input, training);
        var x = dropped ?? input;
        using var scale = RowScale(weight);
        using var baseProduct = F.linear(x, weight);
        using var minusOne = scale - 1;
        using var correction = baseProduct * minusOne;
        output.add_(correction);
        AddScaledUpdate(x, output, scale);
    }

    /// <summary>PEFT's merge: <c>W' = c ⊙ (W + s·BA)</c> with <c>c = m / ‖W + s·BA‖</c>; the norm is kept for
    /// <see cref="UnmergeFrom"/>. The bias is not changed.</summary>
    /// <param name="target">The base parameters.</param>
    public void MergeInto(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        using var delta = _pair.Delta();
        target.Weight.add_(delta);
        var norm = torch.linalg.vector_norm(target.Weight, 2, new long[] { 1 }, false);
        using var scale = _magnitude / norm;
        using var column = scale.unsqueeze(1);
        target.Weight.mul_(column);
        _mergedNorm?.Dispose();
        _mergedNorm = norm;
    }

    /// <summary>PEFT's unmerge: <c>W = W' / c − s·BA</c> with the norm kept by <see cref="MergeInto"/>.</summary>
    /// <param name="target">The merged parameters.</param>
    /// <exception cref="InvalidOperationException">The adapter was not merged by this object.</exception>
    public void UnmergeFrom(LayerParameters target)
    {
        ArgumentNullException.ThrowIfNull(target);
        var norm = _mergedNorm ?? throw new InvalidOperationException(
            $"DoRA adapter '{AdapterName}'{Layer.Where} has no merged norm to unmerge with: it was not merged by this adapter object.");
        using (var scale = _magnitude / norm)
        using (var column = scale.unsqueeze(1))
        {
            target.Weight.div_(column);
        }

        using var delta = _pair.Delta();
        target.Weight.sub_(delta);
        _mergedNorm = null;
        norm.Dispose();
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return ("lora_A.weight", _pair.A);
        yield return ("lora_B.weight", _pair.B);
        yield return (MagnitudeName, _magnitude);
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached magnitude.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _magnitude = RegisteredParameter(MagnitudeName)!;
    }

    /// <summary>Disposes the merged norm with the adapter.</summary>
    /// <param name="disposing">True when called from Dispose().</param>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _mergedNorm?.Dispose();
            _mergedNorm = null;
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// <c>‖W + s·BA‖</c> per output row, without gradient and without forming the <c>out × in</c> sum:
    /// <c>‖W_i‖² + 2s·Σ(B ⊙ W Aᵀ)_i + s²·Σ(B (A Aᵀ) ⊙ B)_i</c>, which reads W twice and computes only rank-sized products
    /// (PEFT forms <c>W + s·BA</c>). Init uses the same function, so <c>m / ‖W‖</c> is exactly 1 at the start.
    /// </summary>
    private Tensor WeightNorm(Tensor weight)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        // Half-precision sums of squares overflow (float16) or lose the small terms (bfloat16): accumulate in float32.
        bool half = weight.dtype is ScalarType.Float16 or ScalarType.BFloat16;
        var w = half ? weight.to(ScalarType.Float32) : weight;
        var a = half ? _pair.A.to(ScalarType.Float32) : _pair.A;
        var b = half ? _pair.B.to(ScalarType.Float32) : _pair.B;
        double s = _pair.Scaling;
        var squared = w.square().sum(1);
        var cross = (b * w.matmul(a.t())).sum(1);
        var quadratic = (b.matmul(a.matmul(a.t())) * b).sum(1);
        squared.add_(cross, 2 * s).add_(quadratic, s * s);
        var norm = squared.clamp_min_(0).sqrt_();
        return (half ? norm.to(weight.dtype) : norm).MoveToOuterDisposeScope();
    }
}
