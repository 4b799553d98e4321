using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A LoHa adapter matching Hugging Face PEFT's <c>loha</c> layer for linear layers:
/// <c>ΔW = (alpha / r) · (W1a W1b) ⊙ (W2a W2b)</c> with <c>W1a, W2a ∈ R^{out×r}</c>, <c>W1b, W2b ∈ R^{r×in}</c>.
/// </summary>
/// <remarks>
/// <para>Parameters are registered under PEFT's names <c>hada_w1_a</c>, <c>hada_w1_b</c>, <c>hada_w2_a</c>, <c>hada_w2_b</c>
/// (bare parameters, no <c>.weight</c> suffix). Initialisation is PEFT's default (<c>init_weights=True</c>): the first three
/// kaiming-uniform with a = √5, <c>hada_w2_b</c> zeros, so the initial update is exactly zero.</para>
/// <para>Forward: the Hadamard product of two rank-r products is the product of their face-splitting (row-wise Khatri-Rao)
/// factors, <c>ΔW = U Vᵀ</c> with <c>U[:, k·r+l] = W1a[:, k] ⊙ W2a[:, l]</c> (<c>[out, r²]</c>) and
/// <c>V[:, k·r+l] = W1b[k, :] ⊙ W2b[l, :]</c> (<c>[in, r²]</c>), so <c>y += s · (x V) Uᵀ</c> is accumulated into the layer's
/// output in place and the out × in update is never formed; autograd differentiates through the (small) U and V.
/// <see cref="DeltaWeight"/> forms the dense update for merging.</para>
/// <para>Training only, as PEFT's LoHa layer: with <see cref="LoHaOptions.ModuleDropout"/> p the adapter is skipped for the
/// whole forward pass when a uniform draw (libtorch's CPU generator, as PEFT's <c>torch.rand(1)</c>) is at most p; with
/// <see cref="LoHaOptions.RankDropout"/> p each output row of ΔW is kept when a uniform draw exceeds p, and the kept rows are
/// multiplied by 1 / (fraction kept) (PEFT's <c>drop /= drop.mean()</c>). Where every row is dropped PEFT divides 0 by 0
/// (NaN); here the update is then zero. Neither dropout ever applies to <see cref="DeltaWeight"/> (merging is deterministic).</para>
/// </remarks>
public sealed class LoHaAdapter : PeftAdapter, IAdditiveAdapter
{
    private const string W1AName = "hada_w1_a";
    private const string W1BName = "hada_w1_b";
    private const string W2AName = "hada_w2_a";
    private const string W2BName = "hada_w2_b";

    private readonly long _r;
    private readonly double _scaling;
    private Parameter _w1a;
    private Parameter _w1b;
    private Parameter _w2a;
    private Parameter _w2b;

    /// <summary>Creates a LoHa adapter initialised as PEFT does, so that its initial update is exactly zero.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The LoHa options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public LoHaAdapter(string adapterName, PeftLayerInfo layer, LoHaOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _r = options.Rank;
        _scaling = options.Scaling;
        _w1a = CreateParameter(W1AName, layer.OutFeatures, _r);
        _w1b = CreateParameter(W1BName, _r, layer.InFeatures);
        _w2a = CreateParameter(W2AName, layer.OutFeatures, _r);
        _w2b = CreateParameter(W2BName, _r, layer.InFeatures);
        ResetParameters();
        TrackDevice(_w1a);
    }

    /// <summary>The options the adapter was created with.</summary>
    public LoHaOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The scaling alpha / r.</summary>
    public double Scaling => _scaling;

    /// <summary><c>hada_w1_a</c> <c>[out, r]</c>.</summary>
    public Parameter W1A => _w1a;

    /// <summary><c>hada_w1_b</c> <c>[r, in]</c>.</summary>
    public Parameter W1B => _w1b;

    /// <summary><c>hada_w2_a</c> <c>[out, r]</c>.</summary>
    public Parameter W2A => _w2a;

    /// <summary><c>hada_w2_b</c> <c>[r, in]</c>.</summary>
    public Parameter W2B => _w2b;

    /// <summary>Re-initialises the parameters as PEFT does (<c>init_weights=True</c>): <c>hada_w1_a</c>, <c>hada_w1_b</c> and
    /// <c>hada_w2_a</c> kaiming-uniform with a = √5, <c>hada_w2_b</c> zeros.</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        double a = Math.Sqrt(5);
        nn.init.kaiming_uniform_(_w1a, a: a);
        nn.init.kaiming_uniform_(_w1b, a: a);
        nn.init.kaiming_uniform_(_w2a, a: a);
        nn.init.zeros_(_w2b);
    }

    /// <summary>
    /// The face-splitting factors of the unscaled update, <c>(W1a W1b) ⊙ (W2a W2b) = U Vᵀ</c>: U <c>[out, r²]</c> with
    /// <c>U[:, k·r+l] = W1a[:, k] ⊙ W2a[:, l]</c>, and Vᵀ <c>[r², in]</c> with <c>Vᵀ[k·r+l, :] = W1b[k, :] ⊙ W2b[l, :]</c>.
    /// Differentiable; the caller disposes both.
    /// </summary>
    /// <returns>U and Vᵀ.</returns>
    public (Tensor U, Tensor VT) KhatriRaoFactors() => (RowFactor(_w1a), ColumnFactor());

    /// <summary>Adds <c>s · (x V) Uᵀ</c> to <paramref name="output"/> in place (see the class remarks; dropouts in training only).</summary>
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

        if (training && Options.ModuleDropout > 0 && SkipsThisPass())
        {
            return;
        }

        using var rowScale = training && Options.RankDropout > 0 ? RankDropoutScale() : null;
        using var rowColumn = rowScale?.unsqueeze(1);
        using var w1a = rowColumn is null ? _w1a.alias() : _w1a * rowColumn;
        using var u = RowFactor(w1a);
        using var vt = ColumnFactor();
        using var h = F.linear(input, vt);   // x V: [N, r²]
        using var uT = u.t();

        // addmm_ takes alpha as a float; for float64 whose scaling is not exactly a float, scale the r²-wide product instead.
        float alpha = (float)_scaling;
        if (h.dtype == ScalarType.Float64 && alpha != _scaling)
        {
            h.mul_(_scaling);
            alpha = 1f;
        }

        output.addmm_(h, uT, beta: 1, alpha: alpha);
    }

    /// <summary><c>(alpha / r) · (W1a W1b) ⊙ (W2a W2b)</c> <c>[out, in]</c>, never with dropout; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight()
    {
        using var first = _w1a.matmul(_w1b);
        using var second = _w2a.matmul(_w2b);
        var delta = first * second;
        delta.mul_(_scaling);
        return delta;
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (W1AName, _w1a);
        yield return (W1BName, _w1b);
        yield return (W2AName, _w2a);
        yield return (W2BName, _w2b);
    }

    /// <summary>Moves or converts the adapter, then refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _w1a = RegisteredParameter(W1AName)!;
        _w1b = RegisteredParameter(W1BName)!;
        _w2a = RegisteredParameter(W2AName)!;
        _w2b = RegisteredParameter(W2BName)!;
    }

    /// <summary>U <c>[out, r²]</c> from <paramref name="w1a"/> (possibly row-masked) and <c>hada_w2_a</c>.</summary>
    private Tensor RowFactor(Tensor w1a)
    {
        using var left = w1a.unsqueeze(2);      // [out, r, 1]
        using var right = _w2a.unsqueeze(1);    // [out, 1, r]
        using var outer = left * right;         // [out, r, r]: W1a[i, k] · W2a[i, l]
        return outer.reshape(OutFeatures, _r * _r);
    }

    /// <summary>Vᵀ <c>[r², in]</c> from <c>hada_w1_b</c> and <c>hada_w2_b</c>.</summary>
    private Tensor ColumnFactor()
    {
        using var left = _w1b.unsqueeze(1);     // [r, 1, in]
        using var right = _w2b.unsqueeze(0);    // [1, r, in]
        using var outer = left * right;         // [r, r, in]: W1b[k, j] · W2b[l, j]
        return outer.reshape(_r * _r, InFeatures);
    }

    /// <summary>PEFT's module dropout: true (skip the adapter) when a uniform draw is at most p.</summary>
    private bool SkipsThisPass()
    {
        using var draw = torch.rand(1);
        return draw.item<float>() <= Options.ModuleDropout;
    }

    /// <summary>PEFT's rank dropout on the rows of ΔW: <c>keep / mean(keep)</c> <c>[out]</c> with <c>keep = rand(out) &gt; p</c>
    /// (the mean floored at 1/out, its smallest non-zero value, so that dropping every row gives a zero update).</summary>
    private Tensor RankDropoutScale()
    {
        using var draw = torch.rand(new[] { OutFeatures }, dtype: ScalarType.Float32, device: _w1a.device);
        using var kept = draw.gt(Options.RankDropout);
        using var keep = kept.to(_w1a.dtype);
        using var mean = keep.mean();
        using var floor = mean.clamp_min(1.0 / OutFeatures);
        return keep / floor;
    }
}
