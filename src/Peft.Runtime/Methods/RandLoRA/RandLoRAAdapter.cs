using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A RandLoRA adapter matching Hugging Face PEFT's <c>randlora</c> layer for linear layers. With min = min(in, out),
/// max = max(in, out), n = ⌈min / r⌉ and slices <c>A = randlora_A[:, :, :min]</c> <c>[r, 1, min]</c>,
/// <c>B = randlora_B[:max, :n, :]</c> <c>[max, n, r]</c> of the frozen bases shared by every layer of the adapter:
/// <c>Â[i·n + j, :] = λ[i, j] · A[i, 0, :] ⊙ γ[j, :]</c> <c>[r·n, min]</c> and <c>B̂ = B.flatten(1)</c> <c>[max, n·r]</c>
/// (column j·r + i: the two flatten orders differ, as in PEFT), <c>ΔW = s · B̂ Â</c> when in ≤ out, else <c>s · (B̂ Â)ᵀ</c>,
/// with s = alpha / r.
/// </summary>
/// <remarks>
/// <para>Trainable parameters are registered under PEFT's names <c>randlora_lambda</c> <c>[r, n]</c> (zeros) and
/// <c>randlora_gamma</c> <c>[n, min]</c> (1 / max(n, min)), so the initial update is exactly zero. The bases are bound once
/// the model is complete (<see cref="PeftModel.BindSharedTensors"/>); until then the adapter cannot run.</para>
/// <para>Forward: the update is full rank and r·n ≥ min, so the two products through the r·n-wide middle cost
/// N·r·n·(in + out), while forming ΔW costs max·r·n·min and then N·in·out. The adapter takes the cheaper per call: the
/// two products when the batch has fewer rows N than max(in, out), otherwise ΔW once and one <c>addmm_</c> (measured in
/// docs/methods.md). Both are the same function; autograd reaches λ and γ through Â either way.</para>
/// </remarks>
public sealed class RandLoRAAdapter : PeftAdapter, IAdditiveAdapter, ISharedTensorAdapter
{
    /// <summary>PEFT's name of the shared small basis <c>[r, 1, min_max]</c>.</summary>
    public const string AName = "randlora_A";

    /// <summary>PEFT's name of the shared large bases <c>[max_max, n_max, r]</c>.</summary>
    public const string BName = "randlora_B";

    private const string LambdaName = "randlora_lambda";
    private const string GammaName = "randlora_gamma";

    private readonly long _r;
    private readonly long _n;
    private readonly long _min;
    private readonly long _max;
    private Parameter _lambda;
    private Parameter _gamma;
    private SharedAdapterTensors? _shared;

    /// <summary>Creates a RandLoRA adapter initialised as PEFT does (λ = 0, γ = 1 / max(n, min)), without its bases yet.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The RandLoRA options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public RandLoRAAdapter(string adapterName, PeftLayerInfo layer, RandLoRAOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _r = options.Rank;
        _min = Math.Min(layer.InFeatures, layer.OutFeatures);
        _max = Math.Max(layer.InFeatures, layer.OutFeatures);
        _n = RandLoRARules.BaseCount(layer.InFeatures, layer.OutFeatures, _r);
        _lambda = CreateParameter(LambdaName, _r, _n);
        _gamma = CreateParameter(GammaName, _n, _min);
        ResetParameters();
        TrackDevice(_lambda);
    }

    /// <summary>The options the adapter was created with.</summary>
    public RandLoRAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The number of bases n = ⌈min(in, out) / r⌉.</summary>
    public long BaseCount => _n;

    /// <summary>The scaling s = alpha / r.</summary>
    public double Scaling => Options.Scaling;

    /// <summary><c>randlora_lambda</c> <c>[r, n]</c>.</summary>
    public Parameter Lambda => _lambda;

    /// <summary><c>randlora_gamma</c> <c>[n, min(in, out)]</c>.</summary>
    public Parameter Gamma => _gamma;

    /// <inheritdoc />
    public SharedAdapterTensors? SharedTensors => _shared;

    /// <summary>Re-initialises λ and γ as PEFT does (<c>init_weights=True</c>): λ zeros, γ filled with 1 / max(n, min).</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        _lambda.zero_();
        _gamma.fill_(1.0 / Math.Max(_n, _min));
    }

    /// <summary><c>Â</c> <c>[r·n, min]</c>: row i·n + j is λ[i, j] · A[i, 0, :min] ⊙ γ[j, :] (differentiable in λ and γ; the
    /// caller disposes it).</summary>
    /// <returns>A new tensor.</returns>
    /// <exception cref="InvalidOperationException">The bases are not bound yet.</exception>
    public Tensor ScaledSmallBasis()
    {
        using var scope = NewDisposeScope();
        var a = Bound()[AName].narrow(2, 0, _min);                 // [r, 1, min]
        var scaled = _lambda.unsqueeze(2) * a * _gamma.unsqueeze(0); // [r, n, min]
        return scaled.reshape(_r * _n, _min).MoveToOuterDisposeScope();
    }

    /// <summary><c>B̂</c> <c>[max, n·r]</c>: <c>randlora_B[:max, :n, :]</c> flattened over its last two dimensions (column
    /// j·r + i); the caller disposes it.</summary>
    /// <returns>A new tensor (a view when the slice is contiguous).</returns>
    /// <exception cref="InvalidOperationException">The bases are not bound yet.</exception>
    public Tensor FlatLargeBasis()
    {
        using var scope = NewDisposeScope();
        var b = Bound()[BName].narrow(0, 0, _max).narrow(1, 0, _n);
        return b.reshape(_max, _n * _r).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public string? Misfit(SharedAdapterTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var a = tensors[AName];
        var b = tensors[BName];
        if (a.Dimensions != 3 || b.Dimensions != 3) return $"randlora_A and randlora_B must be 3-d, they have shapes [{string.Join(", ", a.shape)}] and [{string.Join(", ", b.shape)}]";
        if (a.shape[0] != _r || b.shape[2] != _r) return $"they have rank {a.shape[0]} (randlora_A) and {b.shape[2]} (randlora_B), the layer's r is {_r}";
        if (a.shape[1] != 1) return $"randlora_A's second dimension is {a.shape[1]}, PEFT's is 1";
        if (a.shape[2] < _min) return $"randlora_A has {a.shape[2]} columns, the layer needs {_min} (min of in and out)";
        if (b.shape[0] < _max) return $"randlora_B has {b.shape[0]} rows, the layer needs {_max} (max of in and out)";
        if (b.shape[1] < _n) return $"randlora_B has {b.shape[1]} bases, the layer needs {_n}";
        return null;
    }

    /// <inheritdoc />
    public void Bind(SharedAdapterTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (Misfit(tensors) is { } why) throw new PeftConfigurationException($"RandLoRA adapter '{AdapterName}'{Layer.Where}: {why}.", MemberName, AdapterName);
        _shared = tensors.To(_lambda.dtype, _lambda.device);
    }

    /// <summary>Adds <c>s · dropout(x) ΔWᵀ</c> to <paramref name="output"/> in place (dropout in training only): through the
    /// r·n-wide middle when the batch has fewer rows than max(in, out), otherwise through ΔW (see the class remarks).</summary>
    /// <param name="input">The layer input <c>[..., in]</c>.</param>
    /// <param name="output">The layer output <c>[..., out]</c>, updated in place.</param>
    /// <exception cref="InvalidOperationException">The bases are not bound yet.</exception>
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

        using var dropped = Options.Dropout > 0 && training ? F.dropout(input, Options.Dropout, training: true) : null;
        var x = dropped ?? input;
        if (x.shape[0] >= _max)
        {
            using var delta = DeltaWeight();
            using var deltaT = delta.t();
            output.addmm_(x, deltaT, beta: 1, alpha: 1);
            return;
        }

        using var aHat = ScaledSmallBasis();   // [r·n, min]
        using var bHat = FlatLargeBasis();     // [max, n·r]
        // s scales the r·n-wide middle in the layer's dtype (addmm_'s alpha is a float, which would round s in float64).
        if (InFeatures <= OutFeatures)
        {
            using var h = F.linear(x, aHat);    // [N, r·n]
            using var hs = h.mul(Scaling);
            using var bT = bHat.t();
            output.addmm_(hs, bT, beta: 1, alpha: 1);
        }
        else
        {
            using var h = x.matmul(bHat);       // [N, n·r]
            using var hs = h.mul(Scaling);
            output.addmm_(hs, aHat, beta: 1, alpha: 1);
        }
    }

    /// <summary><c>s · B̂ Â</c> (in ≤ out) or <c>s · (B̂ Â)ᵀ</c> <c>[out, in]</c>, never with dropout; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    /// <exception cref="InvalidOperationException">The bases are not bound yet.</exception>
    public Tensor DeltaWeight()
    {
        using var aHat = ScaledSmallBasis();
        using var bHat = FlatLargeBasis();
        if (InFeatures <= OutFeatures)
        {
            using var product = bHat.matmul(aHat);
            return product.mul(Scaling);
        }

        using var aT = aHat.t();
        using var bT = bHat.t();
        using var productT = aT.matmul(bT);
        return productT.mul(Scaling);
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (LambdaName, _lambda);
        yield return (GammaName, _gamma);
    }

    /// <summary>Moves or converts the adapter and its shared bases (one converted copy for all the adapter's layers), then
    /// refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _lambda = RegisteredParameter(LambdaName)!;
        _gamma = RegisteredParameter(GammaName)!;
        _shared = _shared?.To(_lambda.dtype, _lambda.device);
    }

    private SharedAdapterTensors Bound() => _shared ?? throw new InvalidOperationException(
        $"RandLoRA adapter '{AdapterName}'{Layer.Where} has no shared bases yet: they are sized by the largest layer of the adapter, so they are " +
        "created once the model is complete. Call model.BindSharedTensors() (model.TrainableParameters(), Merge, ApplyTargets, saving and loading do it) before the first forward pass.");
}
