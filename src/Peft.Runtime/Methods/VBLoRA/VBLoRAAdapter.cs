using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A VB-LoRA adapter matching Hugging Face PEFT's <c>vblora</c> layer for linear layers: with the adapter's shared
/// trainable bank V <c>[N, L]</c>, each sub-vector of the factors is <c>Σ_{k ∈ topk(ℓ)} softmax(ℓ_topk)_k · V[k]</c> for its
/// logits ℓ <c>[N]</c>; <c>A</c> <c>[r, in]</c> is <c>compose(vblora_logits_A)</c> <c>[r, in/L, L]</c> reshaped,
/// <c>B</c> <c>[out, r]</c> is <c>compose(vblora_logits_B)</c> <c>[out/L, r, L]</c> transposed to <c>[out/L, L, r]</c> and
/// reshaped, and <c>ΔW = B A</c> (no scaling).
/// </summary>
/// <remarks>
/// <para>The logits are this layer's parameters (PEFT's names, normal with <see cref="VBLoRAOptions.InitLogitsStd"/>); the
/// bank is one parameter for all the adapter's layers (<see cref="SharedAdapterTensors.Parameters"/>), bound once the model
/// is complete (<see cref="PeftModel.BindSharedTensors"/>), and it gets every layer's gradient.</para>
/// <para>Forward: <c>y += (dropout(x) Aᵀ) Bᵀ</c>, an r-wide product and one <c>addmm_</c>; the out × in update is formed only
/// for merging (<see cref="DeltaWeight"/>).</para>
/// </remarks>
public sealed class VBLoRAAdapter : PeftAdapter, IAdditiveAdapter, ISharedTensorAdapter
{
    /// <summary>PEFT's name of the shared bank <c>[N, L]</c>.</summary>
    public const string BankName = "vblora_vector_bank";

    private const string LogitsAName = "vblora_logits_A";
    private const string LogitsBName = "vblora_logits_B";

    private Parameter _logitsA;
    private Parameter _logitsB;
    private SharedAdapterTensors? _shared;

    /// <summary>Creates a VB-LoRA adapter with PEFT's logits init, without its bank yet.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The VB-LoRA options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer (e.g. the vector length
    /// does not divide its sizes).</exception>
    public VBLoRAAdapter(string adapterName, PeftLayerInfo layer, VBLoRAOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        long tileIn = layer.InFeatures / options.VectorLength, tileOut = layer.OutFeatures / options.VectorLength;
        _logitsA = CreateParameter(LogitsAName, options.Rank, tileIn, options.NumVectors);
        _logitsB = CreateParameter(LogitsBName, tileOut, options.Rank, options.NumVectors);
        ResetParameters();
        TrackDevice(_logitsA);
    }

    /// <summary>The options the adapter was created with.</summary>
    public VBLoRAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary><c>vblora_logits_A</c> <c>[r, in/L, N]</c>.</summary>
    public Parameter LogitsA => _logitsA;

    /// <summary><c>vblora_logits_B</c> <c>[out/L, r, N]</c>.</summary>
    public Parameter LogitsB => _logitsB;

    /// <inheritdoc />
    public SharedAdapterTensors? SharedTensors => _shared;

    /// <summary>The bound bank <c>[N, L]</c> (the adapter's shared parameter).</summary>
    /// <exception cref="InvalidOperationException">The bank is not bound yet.</exception>
    public Parameter Bank => (Parameter)Bound()[BankName];

    /// <summary>Re-initialises the logits as PEFT does: normal with mean 0 and <see cref="VBLoRAOptions.InitLogitsStd"/>.</summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        _logitsA.normal_(0, Options.InitLogitsStd);
        _logitsB.normal_(0, Options.InitLogitsStd);
    }

    /// <summary>The top-k mixture of bank vectors for every row of <paramref name="logits"/> <c>[..., N]</c>:
    /// <c>Σ_{k ∈ topk} softmax(ℓ_topk)_k · bank[k]</c>, <c>[..., L]</c> (differentiable in both; the caller disposes it).</summary>
    /// <param name="logits">The logits, last dimension N.</param>
    /// <param name="bank">The bank <c>[N, L]</c>.</param>
    /// <param name="topK">k.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor Compose(Tensor logits, Tensor bank, int topK)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(bank);
        using var scope = NewDisposeScope();
        var (values, indices) = logits.topk(topK, dim: -1);
        var weights = values.softmax(-1).unsqueeze(-1);                       // [..., k, 1]
        var flat = indices.flatten();
        var picked = bank.index_select(0, flat);                               // [M·k, L]
        var shape = indices.shape.Append(bank.shape[1]).ToArray();
        var vectors = picked.view(shape);                                      // [..., k, L]
        return (weights * vectors).sum(dim: -2, keepdim: false).MoveToOuterDisposeScope();
    }

    /// <summary>A <c>[r, in]</c> (differentiable; the caller disposes it).</summary>
    /// <returns>A new tensor.</returns>
    /// <exception cref="InvalidOperationException">The bank is not bound yet.</exception>
    public Tensor FactorA()
    {
        using var composed = Compose(_logitsA, Bound()[BankName], Options.TopK);   // [r, in/L, L]
        return composed.reshape(Options.Rank, InFeatures);
    }

    /// <summary>B <c>[out, r]</c> (differentiable; the caller disposes it).</summary>
    /// <returns>A new tensor.</returns>
    /// <exception cref="InvalidOperationException">The bank is not bound yet.</exception>
    public Tensor FactorB()
    {
        using var composed = Compose(_logitsB, Bound()[BankName], Options.TopK);   // [out/L, r, L]
        using var transposed = composed.transpose(1, 2);                          // [out/L, L, r]
        return transposed.reshape(OutFeatures, Options.Rank);
    }

    /// <inheritdoc />
    public string? Misfit(SharedAdapterTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var bank = tensors[BankName];
        if (bank.Dimensions != 2 || bank.shape[0] != Options.NumVectors || bank.shape[1] != Options.VectorLength)
        {
            return $"vblora_vector_bank is [{string.Join(", ", bank.shape)}], the layer's NumVectors and VectorLength give [{Options.NumVectors}, {Options.VectorLength}]";
        }

        return tensors.IsTrainable(BankName) ? null : "vblora_vector_bank must be trainable";
    }

    /// <inheritdoc />
    public void Bind(SharedAdapterTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (Misfit(tensors) is { } why) throw new PeftConfigurationException($"VB-LoRA adapter '{AdapterName}'{Layer.Where}: {why}.", MemberName, AdapterName);
        _shared = tensors.To(_logitsA.dtype, _logitsA.device);
    }

    /// <summary>Adds <c>(dropout(x) Aᵀ) Bᵀ</c> to <paramref name="output"/> in place (dropout in training only).</summary>
    /// <param name="input">The layer input <c>[..., in]</c>.</param>
    /// <param name="output">The layer output <c>[..., out]</c>, updated in place.</param>
    /// <exception cref="InvalidOperationException">The bank is not bound yet.</exception>
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

        using var a = FactorA();
        using var b = FactorB();
        using var dropped = Options.Dropout > 0 && training ? F.dropout(input, Options.Dropout, training: true) : null;
        using var h = F.linear(dropped ?? input, a);    // [N, r]
        using var bT = b.t();
        output.addmm_(h, bT, beta: 1, alpha: 1);
    }

    /// <summary><c>B A</c> <c>[out, in]</c>, never with dropout; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    /// <exception cref="InvalidOperationException">The bank is not bound yet.</exception>
    public Tensor DeltaWeight()
    {
        using var a = FactorA();
        using var b = FactorB();
        return b.matmul(a);
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return (LogitsAName, _logitsA);
        yield return (LogitsBName, _logitsB);
    }

    /// <summary>Moves or converts the adapter and its shared bank (one converted parameter for all the adapter's layers), then
    /// refreshes the cached parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _logitsA = RegisteredParameter(LogitsAName)!;
        _logitsB = RegisteredParameter(LogitsBName)!;
        _shared = _shared?.To(_logitsA.dtype, _logitsA.device);
    }

    private SharedAdapterTensors Bound() => _shared ?? throw new InvalidOperationException(
        $"VB-LoRA adapter '{AdapterName}'{Layer.Where} has no vector bank yet: the bank is shared by every layer of the adapter, so it is " +
        "created once the model is complete. Call model.BindSharedTensors() (model.TrainableParameters(), Merge, ApplyTargets, saving and loading do it) before the first forward pass.");
}
