using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A LoRA adapter (Hu et al., 2021) as in Hugging Face PEFT: <c>Δ(x) = s · B(A(dropout(x)))</c> with
/// <c>A ∈ R^{r×in}</c> and <c>B ∈ R^{out×r}</c>, held by child linear layers <c>lora_A</c> and <c>lora_B</c>
/// (state-dict names end in <c>lora_A.weight</c> / <c>lora_B.weight</c>). An additive, low-rank adapter: it accumulates
/// <c>s · (x Aᵀ) Bᵀ</c> into the layer's output in place and merges as <c>W += s · B A</c>.
/// </summary>
/// <remarks>With <see cref="LoRAInit.PiSSA"/> or <see cref="LoRAInit.OLoRA"/> the adapter is an <see cref="IBaseRewritingAdapter"/>:
/// when it joins its layer, A and B are set from the base weight and the base keeps the residual <c>W − s·B A</c>. With
/// <see cref="LoRAInit.LoftQ"/> the base becomes the quantized <c>Q</c> and the adapter keeps its codes until
/// <see cref="AdaptedLinear.QuantizeBase"/> takes them (<see cref="IQuantizedResidualAdapter"/>). With <see cref="LoRAInit.CorDA"/>
/// the adapter waits for calibration (<see cref="AwaitsCalibration"/>: zero factors, refusing to run) until
/// <c>model.PreprocessCorDA(...)</c> hands it its decomposition and the layer initialises it (<see cref="AdaptedLayer.InitializeAdapterFromBase"/>).</remarks>
public sealed class LoRAAdapter : PeftAdapter, ILowRankAdapter, IQuantizedResidualAdapter
{
    private readonly LowRankPair _pair;
    private QuantizedWeight? _loftq;
    private CorDAEigens? _corda;
    private bool _calibrated;

    /// <summary>Creates a LoRA adapter initialised as PEFT does (A per <see cref="LoRAOptions.Init"/>, B zeros).</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The LoRA options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public LoRAAdapter(string adapterName, PeftLayerInfo layer, LoRAOptions options)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        Options = options;
        _pair = new LowRankPair(this, layer, options);
        TrackDevice(_pair.A);
    }

    /// <summary>The options the adapter was created with.</summary>
    public LoRAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The rank r.</summary>
    public int Rank => Options.Rank;

    /// <summary>The scaling s (alpha / r or alpha / √r).</summary>
    public double Scaling => _pair.Scaling;

    /// <summary>The dropout probability on the adapter's input.</summary>
    public double Dropout => Options.Dropout;

    /// <summary>The down projection A <c>[r, in]</c> (<c>lora_A.weight</c>).</summary>
    public Parameter A => _pair.A;

    /// <summary>The up projection B <c>[out, r]</c> (<c>lora_B.weight</c>).</summary>
    public Parameter B => _pair.B;

    /// <inheritdoc />
    Parameter ILowRankFactors.Down => A;

    /// <inheritdoc />
    Parameter ILowRankFactors.Up => B;

    /// <inheritdoc />
    bool ILowRankFactors.FactorsReady => !AwaitsCalibration;

    /// <inheritdoc />
    public bool RewritesBase => Options.Init == LoRAInit.CorDA ? _calibrated || _corda is not null : Options.RewritesBase;

    /// <summary>True while a CorDA adapter has not been initialised from calibration data (<c>model.PreprocessCorDA</c>): its
    /// factors are zero and its forward refuses to run.</summary>
    public bool AwaitsCalibration => Options.Init == LoRAInit.CorDA && !_calibrated;

    /// <inheritdoc />
    public string BaseRewriteName => Options.Init switch
    {
        LoRAInit.PiSSA => $"PiSSA, init_lora_weights \"{LoRABaseInitialization.PeftName(Options.Init, Options.PissaIterations)}\"",
        LoRAInit.OLoRA => "OLoRA, init_lora_weights \"olora\"",
        LoRAInit.LoftQ => $"LoftQ, init_lora_weights \"loftq\" with loftq_bits {Options.LoftQBits}, loftq_iter {Options.LoftQIterations}",
        LoRAInit.CorDA => $"CorDA, init_lora_weights \"corda\" with corda_method \"{CorDAInitialization.PeftName(Options.CorDAMethod)}\"",
        _ => "LoRA",
    };

    /// <inheritdoc />
    public QuantizationFormat? ResidualFormat => Options.Init == LoRAInit.LoftQ ? Options.LoftQFormat : null;

    /// <inheritdoc />
    public QuantizedWeight? TakeQuantizedResidual()
    {
        var codes = _loftq;
        _loftq = null;
        return codes;
    }

    /// <summary>With PiSSA or OLoRA: sets A and B from the base weight and leaves the residual <c>W − s·B A</c> in it; with
    /// LoftQ, leaves its quantized <c>Q</c> and keeps the codes (<see cref="LoRABaseInitialization.Apply"/>); the layer calls it
    /// under no_grad. Other initialisations do not read the base.</summary>
    /// <param name="layer">The base parameters.</param>
    public void InitializeFromBase(LayerParameters layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (Options.Init == LoRAInit.CorDA)
        {
            InitializeCorDA(layer.Weight);
            return;
        }

        if (RewritesBase)
        {
            var codes = LoRABaseInitialization.Apply(Options, layer.Weight, _pair.A, _pair.B);
            DisposeCodes();
            _loftq = codes;
        }
    }

    /// <summary>Hands a CorDA adapter its layer's decomposition (<c>model.PreprocessCorDA</c> does); the layer's
    /// <see cref="AdaptedLayer.InitializeAdapterFromBase"/> then sets A, B and the residual from it. The adapter owns
    /// <paramref name="eigens"/> from here on.</summary>
    /// <param name="eigens">The decomposition cropped to this adapter's rank.</param>
    /// <exception cref="InvalidOperationException">The adapter is not CorDA, is calibrated already, or the shapes do not fit.</exception>
    public void SetCorDAEigens(CorDAEigens eigens)
    {
        ArgumentNullException.ThrowIfNull(eigens);
        string where = $"LoRA adapter '{AdapterName}'{AdapterNameRules.Describe(MemberName)}";
        if (Options.Init != LoRAInit.CorDA) throw new InvalidOperationException($"{where} is {Options.Init}, not CorDA.");
        if (_calibrated) throw new InvalidOperationException($"{where} is calibrated already: its base holds the residual. Load the original base weights and call model.ReinitializeFromBase() first.");
        if (eigens.S.shape[0] != Rank || !eigens.U.shape.SequenceEqual(new[] { OutFeatures, (long)Rank }) || !eigens.V.shape.SequenceEqual(new[] { InFeatures, (long)Rank }))
        {
            throw new InvalidOperationException(
                $"{where}: the CorDA decomposition has S [{string.Join(", ", eigens.S.shape)}], U [{string.Join(", ", eigens.U.shape)}], V [{string.Join(", ", eigens.V.shape)}], " +
                $"but the adapter needs S [{Rank}], U [{OutFeatures}, {Rank}], V [{InFeatures}, {Rank}] (rank {Rank}); was it computed for another model or rank?");
        }

        _corda?.Dispose();
        _corda = eigens;
    }

    /// <summary>
    /// Re-initialises the parameters as PEFT does: A kaiming-uniform with a = √5 (or normal with std 1/r for
    /// <see cref="LoRAInit.Gaussian"/>), B zeros (kaiming-uniform too for <see cref="LoRAInit.Random"/>), so the adapter's
    /// initial contribution is exactly zero.
    /// </summary>
    public void ResetParameters() => _pair.Reset();

    /// <summary>Adds <c>s · (dropout(x) Aᵀ) Bᵀ</c> to <paramref name="output"/> in place (one rank-sized product and an
    /// <c>addmm_</c>; the <c>out × in</c> update is never formed).</summary>
    /// <param name="input">The layer input <c>[..., in]</c>.</param>
    /// <param name="output">The layer output <c>[..., out]</c>, updated in place.</param>
    public void AddTo(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        if (AwaitsCalibration)
        {
            throw new PeftConfigurationException(
                $"LoRA adapter '{AdapterName}'{AdapterNameRules.Describe(MemberName)} is CorDA (init_lora_weights \"corda\") and has not been calibrated: its factors come from the " +
                "layer's input covariance. Call model.PreprocessCorDA(run) with forward passes over calibration batches (or CorDASettings with an existing cache or covariance file) " +
                "before running or training the model.", MemberName, AdapterName);
        }

        if (input.Dimensions != 2 || output.Dimensions != 2)
        {
            using var x2 = input.reshape(-1, InFeatures);
            using var y2 = output.view(-1, OutFeatures);
            AddTo(x2, y2);
            return;
        }

        using var dropped = _pair.Dropout(input, training);
        _pair.AddTo(dropped ?? input, output, _pair.B);
    }

    /// <summary><c>s · B A</c> <c>[out, in]</c>; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight() => _pair.Delta();

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return ("lora_A.weight", _pair.A);
        yield return ("lora_B.weight", _pair.B);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            DisposeCodes();
            _corda?.Dispose();
            _corda = null;
        }

        base.Dispose(disposing);
    }

    /// <summary>CorDA: with a decomposition handed over, A and B from it and the residual <c>W − s·B A</c> written into the weight
    /// (in float32, or float64 for a float64 layer; the residual cast back); without one (an added adapter, or a re-initialisation
    /// after the base was reloaded) zero factors and waiting for calibration again.</summary>
    private void InitializeCorDA(Tensor weight)
    {
        if (_corda is not { } eigens)
        {
            nn.init.zeros_(_pair.A);
            nn.init.zeros_(_pair.B);
            _calibrated = false;
            return;
        }

        using (var scope = NewDisposeScope())
        {
            var (a, b) = CorDAInitialization.Factors(eigens, Scaling);
            var compute = weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
            var residual = weight.to(compute) - b.to(compute).matmul(a.to(compute)).mul_(Scaling);
            _pair.A.copy_(a);
            _pair.B.copy_(b);
            weight.copy_(residual);
        }

        eigens.Dispose();
        _corda = null;
        _calibrated = true;
    }

    private void DisposeCodes()
    {
        if (_loftq is { } codes)
        {
            foreach (var buffer in codes.Buffers.Values) buffer.Dispose();
            _loftq = null;
        }
    }
}

/// <summary>Shorthands for adding a LoRA adapter to a layer.</summary>
public static class LoRALayerExtensions
{
    /// <summary>Adds a LoRA adapter (<see cref="AdaptedLayer.WithAdapter"/> with <see cref="LoRAOptions"/>).</summary>
    /// <typeparam name="TLayer">The wrapper type.</typeparam>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="options">The options.</param>
    /// <returns>The layer.</returns>
    public static TLayer WithLoRA<TLayer>(this TLayer layer, string adapterName, LoRAOptions options)
        where TLayer : AdaptedLayer
    {
        ArgumentNullException.ThrowIfNull(layer);
        layer.WithAdapter(adapterName, options);
        return layer;
    }
}
