using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A VeRA adapter matching Hugging Face PEFT's <c>vera</c> layer for linear layers:
/// <c>ΔW = diag(λ_b) B diag(λ_d) A</c> with <c>A = vera_A[:, :in]</c> and <c>B = vera_B[:out, :]</c>, slices of the frozen
/// projections shared by every layer of the adapter (<see cref="SharedAdapterTensors"/>).
/// </summary>
/// <remarks>
/// <para>Trainable parameters are registered under PEFT's names <c>vera_lambda_b</c> <c>[out]</c> (zeros) and
/// <c>vera_lambda_d</c> <c>[r]</c> (<see cref="VeRAOptions.DInitial"/>), so the initial update is exactly zero. The projections
/// are bound once the model is complete (<see cref="PeftModel.BindSharedTensors"/>); until then the adapter cannot run.</para>
/// <para>Forward: <c>y += ((dropout(x) Aᵀ) ⊙ λ_d) (λ_b ⊙ B)ᵀ</c>, an r-wide product and one <c>addmm_</c> into the layer's
/// output, so the out × in update is never formed. <see cref="DeltaWeight"/> forms it for merging.</para>
/// </remarks>
public sealed class VeRAAdapter : PeftAdapter, IAdditiveAdapter, ISharedTensorAdapter
{
    /// <summary>PEFT's name of the shared down projection <c>[r, in_max]</c>.</summary>
    public const string AName = "vera_A";

    /// <summary>PEFT's name of the shared up projection <c>[out_max, r]</c>.</summary>
    public const string BName = "vera_B";

    private const string LambdaBName = "vera_lambda_b";
    private const string LambdaDName = "vera_lambda_d";

    private readonly long _r;
    private Parameter _lambdaB;
    private Parameter _lambdaD;
    private SharedAdapterTensors? _shared;

    /// <summary>Creates a VeRA adapter initialised as PEFT does (λ_b = 0, λ_d = d_initial), without its projections yet.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The VeRA options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public VeRAAdapter(string adapterName, PeftLayerInfo layer, VeRAOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _r = options.Rank;
        _lambdaB = CreateParameter(LambdaBName, layer.OutFeatures);
        _lambdaD = CreateParameter(LambdaDName, _r);
        ResetParameters();
        TrackDevice(_lambdaB);
    }

    /// <summary>The options the adapter was created with.</summary>
    public VeRAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary><c>vera_lambda_b</c> <c>[out]</c>.</summary>
    public Parameter LambdaB => _lambdaB;

    /// <summary><c>vera_lambda_d</c> <c>[r]</c>.</summary>
    public Parameter LambdaD => _lambdaD;

    /// <inheritdoc />
    public SharedAdapterTensors? SharedTensors => _shared;

    /// <summary>This layer's slice of <c>vera_A</c>, <c>[r, in]</c> (a view; the caller disposes it).</summary>
    /// <returns>The slice.</returns>
    /// <exception cref="InvalidOperationException">The projections are not bound yet.</exception>
    public Tensor SliceA() => Bound()[AName].narrow(1, 0, InFeatures);

    /// <summary>This layer's slice of <c>vera_B</c>, <c>[out, r]</c> (a view; the caller disposes it).</summary>
    /// <returns>The slice.</returns>
    /// <exception cref="InvalidOperationException">The projections are not bound yet.</exception>
    public Tensor SliceB() => Bound()[BName].narrow(0, 0, OutFeatures);

    /// <summary>Re-initialises λ as PEFT does (<c>init_weights=True</c>): λ_b zeros, λ_d filled with d_initial.</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        _lambdaB.zero_();
        _lambdaD.fill_(Options.DInitial);
    }

    /// <inheritdoc />
    public string? Misfit(SharedAdapterTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var a = tensors[AName];
        var b = tensors[BName];
        if (a.Dimensions != 2 || b.Dimensions != 2) return "vera_A and vera_B must be 2-d";
        if (a.shape[0] != _r || b.shape[1] != _r) return $"they have rank {a.shape[0]} (vera_A) and {b.shape[1]} (vera_B), the layer's r is {_r}";
        if (a.shape[1] < InFeatures) return $"vera_A has {a.shape[1]} columns, the layer needs {InFeatures}";
        if (b.shape[0] < OutFeatures) return $"vera_B has {b.shape[0]} rows, the layer needs {OutFeatures}";
        return null;
    }

    /// <inheritdoc />
    public void Bind(SharedAdapterTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (Misfit(tensors) is { } why) throw new PeftConfigurationException($"VeRA adapter '{AdapterName}'{Layer.Where}: {why}.", MemberName, AdapterName);
        _shared = tensors.To(_lambdaB.dtype, _lambdaB.device);
    }

    /// <summary>Adds <c>((dropout(x) Aᵀ) ⊙ λ_d) (λ_b ⊙ B)ᵀ</c> to <paramref name="output"/> in place (dropout in training only).</summary>
    /// <param name="input">The layer input <c>[..., in]</c>.</param>
    /// <param name="output">The layer output <c>[..., out]</c>, updated in place.</param>
    /// <exception cref="InvalidOperationException">The projections are not bound yet.</exception>
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

        using var a = SliceA();
        using var b = SliceB();
        using var dropped = Options.Dropout > 0 && training ? F.dropout(input, Options.Dropout, training: true) : null;
        using var h = F.linear(dropped ?? input, a);        // [N, r]
        using var hd = h * _lambdaD;                          // ⊙ λ_d
        using var lambdaB = _lambdaB.unsqueeze(1);
        using var scaledB = b * lambdaB;                      // λ_b ⊙ B: [out, r]
        using var scaledBT = scaledB.t();
        output.addmm_(hd, scaledBT);
    }

    /// <summary><c>diag(λ_b) B diag(λ_d) A</c> <c>[out, in]</c>, never with dropout; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    /// <exception cref="InvalidOperationException">The projections are not bound yet.</exception>
    public Tensor DeltaWeight()
    {
        using var a = SliceA();
        using var b = SliceB();
        using var lambdaB = _lambdaB.unsqueeze(1);
        using var lambdaD = _lambdaD.unsqueeze(1);
        using var left = b * lambdaB;       // [out, r]
        using var right = a * lambdaD;      // [r, in]
        return left.matmul(right);
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (LambdaBName, _lambdaB);
        yield return (LambdaDName, _lambdaD);
    }

    /// <summary>Moves or converts the adapter and its shared projections (one converted copy for all the adapter's layers),
    /// then refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _lambdaB = RegisteredParameter(LambdaBName)!;
        _lambdaD = RegisteredParameter(LambdaDName)!;
        _shared = _shared?.To(_lambdaB.dtype, _lambdaB.device);
    }

    private SharedAdapterTensors Bound() => _shared ?? throw new InvalidOperationException(
        $"VeRA adapter '{AdapterName}'{Layer.Where} has no shared projections yet: they are sized by the largest layer of the adapter, so they are " +
        "created once the model is complete. Call model.BindSharedTensors() (model.TrainableParameters(), Merge, ApplyTargets, saving and loading do it) before the first forward pass.");
}
