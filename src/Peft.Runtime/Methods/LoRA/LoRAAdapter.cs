using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A LoRA adapter (Hu et al., 2021) as in Hugging Face PEFT: <c>Δ(x) = s · B(A(dropout(x)))</c> with
/// <c>A ∈ R^{r×in}</c> and <c>B ∈ R^{out×r}</c>, held by child linear layers <c>lora_A</c> and <c>lora_B</c>
/// (state-dict names end in <c>lora_A.weight</c> / <c>lora_B.weight</c>). An additive, low-rank adapter: it accumulates
/// <c>s · (x Aᵀ) Bᵀ</c> into the layer's output in place and merges as <c>W += s · B A</c>.
/// </summary>
public class LoRAAdapter : PeftAdapter, ILowRankAdapter
{
    private readonly Linear _loraA;
    private readonly Linear _loraB;
    private readonly double _scaling;
    private readonly float _alphaArgument;
    private readonly bool _preScale;
    private readonly int _rank;
    private readonly double _dropout;
    private readonly LoRAInit _init;
    private readonly PeftAdapterOptions _config;

    /// <summary>Creates a LoRA adapter initialised as PEFT does (A per <see cref="LoRAOptions.Init"/>, B zeros).</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="options">The LoRA options.</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public LoRAAdapter(string adapterName, PeftLayerInfo layer, LoRAOptions options)
        : this(adapterName, layer, Validated(adapterName, layer, options), options)
    {
    }

    /// <summary>Creates the low-rank part of a LoRA-style adapter (for variants such as DoRA, which validate their own options).</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="layer">The layer.</param>
    /// <param name="lowRank">The variant's rank, alpha, dropout, scaling rule and initialisation as LoRA options.</param>
    /// <param name="config">The variant's own options (<see cref="Config"/>).</param>
    protected LoRAAdapter(string adapterName, PeftLayerInfo layer, LoRAOptions lowRank, PeftAdapterOptions config)
        : base(adapterName, layer)
    {
        ArgumentNullException.ThrowIfNull(lowRank);
        ArgumentNullException.ThrowIfNull(config);
        Options = lowRank;
        _config = config;
        _rank = lowRank.Rank;
        _scaling = lowRank.Scaling;
        _dropout = lowRank.Dropout;
        _init = lowRank.Init;
        _loraA = nn.Linear(layer.InFeatures, _rank, hasBias: false, device: layer.Device, dtype: layer.DType);
        _loraB = nn.Linear(_rank, layer.OutFeatures, hasBias: false, device: layer.Device, dtype: layer.DType);
        ResetParameters();
        register_module("lora_A", _loraA);
        register_module("lora_B", _loraB);
        TrackDevice(_loraA.weight);

        // addmm_ takes alpha as a float; for float64 layers whose scaling is not exactly a float, scale the rank-sized
        // intermediate in double precision instead.
        _alphaArgument = (float)_scaling;
        _preScale = _loraA.weight.dtype == ScalarType.Float64 && _alphaArgument != _scaling;
    }

    /// <summary>The LoRA options (for a variant: its rank, alpha, dropout and initialisation as LoRA options).</summary>
    public LoRAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => _config;

    /// <summary>The rank r.</summary>
    public int Rank => _rank;

    /// <summary>The scaling s (alpha / r or alpha / √r).</summary>
    public double Scaling => _scaling;

    /// <summary>The dropout probability on the adapter's input.</summary>
    public double Dropout => _dropout;

    /// <summary>The down projection A <c>[r, in]</c> (<c>lora_A.weight</c>).</summary>
    public Parameter A => _loraA.weight;

    /// <summary>The up projection B <c>[out, r]</c> (<c>lora_B.weight</c>).</summary>
    public Parameter B => _loraB.weight;

    /// <inheritdoc />
    Parameter ILowRankAdapter.Down => A;

    /// <inheritdoc />
    Parameter ILowRankAdapter.Up => B;

    /// <summary>
    /// Re-initialises the parameters as PEFT does: A kaiming-uniform with a = √5 (or normal with std 1/r for
    /// <see cref="LoRAInit.Gaussian"/>), B zeros (kaiming-uniform too for <see cref="LoRAInit.Random"/>), so the adapter's
    /// initial contribution is exactly zero.
    /// </summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        if (_init == LoRAInit.Gaussian)
        {
            nn.init.normal_(_loraA.weight, mean: 0.0, std: 1.0 / _rank);
        }
        else
        {
            nn.init.kaiming_uniform_(_loraA.weight, a: Math.Sqrt(5));
        }

        if (_init == LoRAInit.Random)
        {
            nn.init.kaiming_uniform_(_loraB.weight, a: Math.Sqrt(5));
        }
        else
        {
            nn.init.zeros_(_loraB.weight);
        }
    }

    /// <summary>Adds <c>s · (dropout(x) Aᵀ) Bᵀ</c> to <paramref name="output"/> in place (one rank-sized product and an
    /// <c>addmm_</c>; the <c>out × in</c> update is never formed).</summary>
    /// <param name="input">The layer input <c>[..., in]</c>.</param>
    /// <param name="output">The layer output <c>[..., out]</c>, updated in place.</param>
    public virtual void AddTo(Tensor input, Tensor output)
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

        using var dropped = DropoutInput(input);
        using var h = F.linear(dropped ?? input, _loraA.weight);
        using var bt = _loraB.weight.t();
        if (_preScale)
        {
            h.mul_(_scaling);
            output.addmm_(h, bt, beta: 1, alpha: 1);
        }
        else
        {
            output.addmm_(h, bt, beta: 1, alpha: _alphaArgument);
        }
    }

    /// <summary><c>s · B A</c> <c>[out, in]</c>; the caller disposes it.</summary>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight()
    {
        var delta = _loraB.weight.matmul(_loraA.weight);
        delta.mul_(_scaling);
        return delta;
    }

    /// <inheritdoc />
    public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
    {
        yield return ("lora_A.weight", _loraA.weight);
        yield return ("lora_B.weight", _loraB.weight);
    }

    private static LoRAOptions Validated(string adapterName, PeftLayerInfo layer, LoRAOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, layer);
        return options;
    }

    /// <summary>The dropped-out input in training mode with a positive dropout, else null (use the input as is).</summary>
    /// <param name="input">The input.</param>
    /// <returns>A new tensor, or null.</returns>
    protected Tensor? DropoutInput(Tensor input)
        => _dropout > 0 && training ? F.dropout(input, _dropout, training: true) : null;
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
