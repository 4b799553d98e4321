using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A Kronecker-product adapter (LoKr) matching Hugging Face PEFT's <c>lokr</c> layer for linear layers:
/// <c>ΔW = (alpha / r) · kron(W1, W2)</c> with <c>W1 ∈ R^{l×m}</c>, <c>W2 ∈ R^{k×n}</c>, <c>out = l·k</c>,
/// <c>in = m·n</c>. W2 (and W1 with <see cref="KroneckerOptions.DecomposeBoth"/>) is a rank-r product
/// <c>W_a W_b</c> when r is below half of the factor's larger side.
/// </summary>
/// <remarks>
/// Parameters are registered under PEFT's names: <c>lokr_w1</c> or <c>lokr_w1_a</c>/<c>lokr_w1_b</c>, and
/// <c>lokr_w2</c> or <c>lokr_w2_a</c>/<c>lokr_w2_b</c>. The forward pass uses the Kronecker structure
/// (<c>Y = W1 · X · W2ᵀ</c> with <c>X = x</c> reshaped to <c>[N, m, n]</c>) and never forms the out × in matrix.
/// </remarks>
public sealed class KroneckerAdapter : PeftAdapter, IAdditiveAdapter
{
    private const string W1Name = "lokr_w1";
    private const string W1AName = "lokr_w1_a";
    private const string W1BName = "lokr_w1_b";
    private const string W2Name = "lokr_w2";
    private const string W2AName = "lokr_w2_a";
    private const string W2BName = "lokr_w2_b";

    private readonly long _l;
    private readonly long _k;
    private readonly long _m;
    private readonly long _n;
    private readonly long _r;
    private readonly double _scaling;
    private readonly float _alphaArgument;
    private readonly bool _preScale;
    private Parameter? _w1;
    private Parameter? _w1a;
    private Parameter? _w1b;
    private Parameter? _w2;
    private Parameter? _w2a;
    private Parameter? _w2b;

    /// <summary>Creates a Kronecker adapter initialised as PEFT does, so that its initial update is exactly zero.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The Kronecker options; with <see cref="KroneckerOptions.FullFactors"/> the adapter keeps the
    /// equivalent PEFT settings (<see cref="KroneckerOptions.ForLayer"/>) as its <see cref="Options"/>.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public KroneckerAdapter(string adapterName, PeftLayerInfo layer, KroneckerOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        options = options.ForLayer(layer.InFeatures, layer.OutFeatures);
        Options = options;
        var (inM, inN) = KroneckerRules.Factorize((int)layer.InFeatures, options.Factor);
        var (outL, outK) = KroneckerRules.Factorize((int)layer.OutFeatures, options.Factor);
        _m = inM;
        _n = inN;
        _l = outL;
        _k = outK;
        _r = options.Rank;
        _scaling = options.Scaling;
        UsesFullW1 = KroneckerRules.UsesFullW1(options.Rank, outL, inM, options.DecomposeBoth);
        UsesFullW2 = KroneckerRules.UsesFullW2(options.Rank, outK, inN);

        if (UsesFullW1)
        {
            _w1 = CreateParameter(W1Name, _l, _m);
        }
        else
        {
            _w1a = CreateParameter(W1AName, _l, _r);
            _w1b = CreateParameter(W1BName, _r, _m);
        }

        if (UsesFullW2)
        {
            _w2 = CreateParameter(W2Name, _k, _n);
        }
        else
        {
            _w2a = CreateParameter(W2AName, _k, _r);
            _w2b = CreateParameter(W2BName, _r, _n);
        }

        ResetParameters();
        var anyParameter = _w1 ?? _w1a!;
        TrackDevice(anyParameter);
        _alphaArgument = (float)_scaling;
        _preScale = anyParameter.dtype == ScalarType.Float64 && _alphaArgument != _scaling;
    }

    /// <summary>The options the adapter was created with.</summary>
    public KroneckerOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The scaling alpha / r.</summary>
    public double Scaling => _scaling;

    /// <summary>The output factors (l, k) with <c>out = l·k</c>.</summary>
    public (int L, int K) OutFactors => ((int)_l, (int)_k);

    /// <summary>The input factors (m, n) with <c>in = m·n</c>.</summary>
    public (int M, int N) InFactors => ((int)_m, (int)_n);

    /// <summary>True when W1 is a full <c>[l, m]</c> parameter (<c>lokr_w1</c>); false when it is <c>lokr_w1_a · lokr_w1_b</c>.</summary>
    public bool UsesFullW1 { get; }

    /// <summary>True when W2 is a full <c>[k, n]</c> parameter (<c>lokr_w2</c>); false when it is <c>lokr_w2_a · lokr_w2_b</c>.</summary>
    public bool UsesFullW2 { get; }

    /// <summary><c>lokr_w1</c> <c>[l, m]</c>, or null when W1 is factored.</summary>
    public Parameter? W1 => _w1;

    /// <summary><c>lokr_w1_a</c> <c>[l, r]</c>, or null when W1 is full.</summary>
    public Parameter? W1A => _w1a;

    /// <summary><c>lokr_w1_b</c> <c>[r, m]</c>, or null when W1 is full.</summary>
    public Parameter? W1B => _w1b;

    /// <summary><c>lokr_w2</c> <c>[k, n]</c>, or null when W2 is factored.</summary>
    public Parameter? W2 => _w2;

    /// <summary><c>lokr_w2_a</c> <c>[k, r]</c>, or null when W2 is full.</summary>
    public Parameter? W2A => _w2a;

    /// <summary><c>lokr_w2_b</c> <c>[r, n]</c>, or null when W2 is full.</summary>
    public Parameter? W2B => _w2b;

    /// <summary>
    /// Re-initialises the parameters as PEFT does: <c>lokr_w1</c> zeros (or <c>lokr_w1_a</c> zeros and <c>lokr_w1_b</c>
    /// kaiming-uniform), W2 or its factors kaiming-uniform, all with a = √5.
    /// </summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        double a = Math.Sqrt(5);
        if (_w1 is not null)
        {
            nn.init.zeros_(_w1);
        }
        else
        {
            nn.init.zeros_(_w1a!);
            nn.init.kaiming_uniform_(_w1b!, a: a);
        }

        if (_w2 is not null)
        {
            nn.init.kaiming_uniform_(_w2, a: a);
        }
        else
        {
            nn.init.kaiming_uniform_(_w2a!, a: a);
            nn.init.kaiming_uniform_(_w2b!, a: a);
        }
    }

    /// <summary>Adds <c>s · W1 X W2ᵀ</c> (X = x reshaped to <c>[N, m, n]</c>) to <paramref name="output"/> in place.</summary>
    /// <param name="input">The layer input <c>[..., in]</c>.</param>
    /// <param name="output">The layer output <c>[..., out]</c>, updated in place.</param>
    public void AddTo(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        if (input.Dimensions != 2 || output.Dimensions != 2)
        {
            using var x2 = input.reshape(-1, InFeatures);
            using var y2 = output.view(-1, OutFeatures);
            AddTo(x2, y2);
            return;
        }

        long batch = input.shape[0];

        // Z = W1 · X: [N, l, n], with X = x as [N, m, n] (x[:, c·n + d] = X[:, c, d]).
        using var x3 = input.reshape(batch, _m, _n);
        using var z = LeftMultiply(x3, batch);
        using var z2 = z.view(batch * _l, _n);

        // Y = Z · W2ᵀ: [N·l, k], which is the output viewed as [N·l, k] (y[:, a·k + b] = Y[:, a, b]).
        using var h = _w2 is not null ? null : F.linear(z2, _w2b!);
        using var rightT = _w2 is not null ? _w2.t() : _w2a!.t();
        var left = h ?? z2;
        if (_preScale)
        {
            left.mul_(_scaling);
        }

        float alpha = _preScale ? 1f : _alphaArgument;
        if (output.is_contiguous())
        {
            using var target = output.view(batch * _l, _k);
            target.addmm_(left, rightT, beta: 1, alpha: alpha);
        }
        else
        {
            using var product = left.mm(rightT);
            using var flat = product.view(batch, OutFeatures);
            output.add_(flat, alpha: alpha);
        }
    }

    /// <summary><c>(alpha / r) · kron(W1, W2)</c> <c>[out, in]</c>; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight()
    {
        using var w1 = _w1 is not null ? _w1.alias() : _w1a!.matmul(_w1b!);
        using var w2 = _w2 is not null ? _w2.alias() : _w2a!.matmul(_w2b!);
        var delta = torch.kron(w1, w2);
        delta.mul_(_scaling);
        return delta;
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        if (_w1 is not null)
        {
            yield return (W1Name, _w1);
        }

        if (_w1a is not null)
        {
            yield return (W1AName, _w1a);
            yield return (W1BName, _w1b!);
        }

        if (_w2 is not null)
        {
            yield return (W2Name, _w2);
        }

        if (_w2a is not null)
        {
            yield return (W2AName, _w2a);
            yield return (W2BName, _w2b!);
        }
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _w1 = RegisteredParameter(W1Name);
        _w1a = RegisteredParameter(W1AName);
        _w1b = RegisteredParameter(W1BName);
        _w2 = RegisteredParameter(W2Name);
        _w2a = RegisteredParameter(W2AName);
        _w2b = RegisteredParameter(W2BName);
    }

    private Tensor LeftMultiply(Tensor x3, long batch)
    {
        if (_w1 is not null)
        {
            using var w1 = _w1.expand(batch, _l, _m);
            return torch.bmm(w1, x3);
        }

        using var b = _w1b!.expand(batch, _r, _m);
        using var t = torch.bmm(b, x3);
        using var a = _w1a!.expand(batch, _l, _r);
        return torch.bmm(a, t);
    }
}
