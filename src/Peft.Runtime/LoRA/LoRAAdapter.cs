using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A LoRA adapter (Hu et al., 2021) as in Hugging Face PEFT: <c>Δ(x) = s · B(A(dropout(x)))</c> with
/// <c>A ∈ R^{r×in}</c> and <c>B ∈ R^{out×r}</c>, held by child linear layers <c>lora_A</c> and <c>lora_B</c>
/// (state-dict names end in <c>lora_A.weight</c> / <c>lora_B.weight</c>).
/// </summary>
public sealed class LoRAAdapter : LinearAdapter
{
    private readonly Linear _loraA;
    private readonly Linear _loraB;
    private readonly double _scaling;
    private readonly float _alphaArgument;
    private readonly bool _preScale;

    /// <summary>Creates a LoRA adapter initialised as PEFT does (A per <see cref="LoRAOptions.Init"/>, B zeros).</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="inFeatures">The layer's input size.</param>
    /// <param name="outFeatures">The layer's output size.</param>
    /// <param name="options">The LoRA options.</param>
    /// <param name="device">The device of the layer's weight (default: CPU).</param>
    /// <param name="dtype">The dtype of the layer's weight (default: the default dtype).</param>
    /// <param name="memberName">The member the layer belongs to, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">The name or options are invalid for the layer.</exception>
    public LoRAAdapter(string adapterName, long inFeatures, long outFeatures, LoRAOptions options,
        Device? device = null, ScalarType? dtype = null, string? memberName = null)
        : base(adapterName, inFeatures, outFeatures, memberName)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(adapterName, memberName, inFeatures, outFeatures);
        Options = options;
        _scaling = options.Scaling;
        _loraA = nn.Linear(inFeatures, options.Rank, hasBias: false, device: device, dtype: dtype);
        _loraB = nn.Linear(options.Rank, outFeatures, hasBias: false, device: device, dtype: dtype);
        ResetParameters();
        register_module("lora_A", _loraA);
        register_module("lora_B", _loraB);
        TrackDevice(_loraA.weight);

        // addmm_ takes alpha as a float; for float64 layers whose scaling is not exactly a float, scale the rank-sized
        // intermediate in double precision instead.
        _alphaArgument = (float)_scaling;
        _preScale = _loraA.weight.dtype == ScalarType.Float64 && _alphaArgument != _scaling;
    }

    /// <inheritdoc />
    public override PeftMethod Method => PeftMethod.LoRA;

    /// <summary>The options the adapter was created with.</summary>
    public LoRAOptions Options { get; }

    /// <inheritdoc />
    public override PeftAdapterOptions Config => Options;

    /// <summary>The rank r.</summary>
    public int Rank => Options.Rank;

    /// <summary>The scaling s (alpha / r or alpha / √r).</summary>
    public double Scaling => _scaling;

    /// <summary>The down projection A <c>[r, in]</c> (<c>lora_A.weight</c>).</summary>
    public Parameter A => _loraA.weight;

    /// <summary>The up projection B <c>[out, r]</c> (<c>lora_B.weight</c>).</summary>
    public Parameter B => _loraB.weight;

    /// <summary>
    /// Re-initialises the parameters as PEFT does: A kaiming-uniform with a = √5 (or normal with std 1/r for
    /// <see cref="LoRAInit.Gaussian"/>), B zeros, so the adapter's initial contribution is exactly zero.
    /// </summary>
    public void ResetParameters()
    {
        using var noGrad = torch.no_grad();
        if (Options.Init == LoRAInit.Gaussian)
        {
            nn.init.normal_(_loraA.weight, mean: 0.0, std: 1.0 / Options.Rank);
        }
        else
        {
            nn.init.kaiming_uniform_(_loraA.weight, a: Math.Sqrt(5));
        }

        nn.init.zeros_(_loraB.weight);
    }

    /// <inheritdoc />
    public override void AddTo(Tensor input, Tensor output)
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

        Tensor? dropped = null;
        try
        {
            var x = input;
            if (Options.Dropout > 0 && training)
            {
                dropped = F.dropout(input, Options.Dropout, training: true);
                x = dropped;
            }

            using var h = F.linear(x, _loraA.weight);
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
        finally
        {
            dropped?.Dispose();
        }
    }

    /// <inheritdoc />
    public override Tensor DeltaWeight()
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
}
