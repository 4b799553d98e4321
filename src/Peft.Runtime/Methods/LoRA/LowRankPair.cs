using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// The factors every LoRA-style adapter owns: child linear layers <c>lora_A</c> <c>[r, in]</c> and <c>lora_B</c>
/// <c>[out, r]</c> registered on the adapter (PEFT's names), their initialisation and the products on them. One copy for
/// LoRA, DoRA and the LoRA-format methods that follow.
/// </summary>
internal sealed class LowRankPair
{
    private readonly Linear _a;
    private readonly Linear _b;
    private readonly double _scaling;
    private readonly float _alphaArgument;
    private readonly bool _preScale;

    /// <summary>Creates and registers the factors on <paramref name="owner"/>, initialised by <paramref name="options"/>.</summary>
    public LowRankPair(nn.Module owner, PeftLayerInfo layer, LoRAOptions options)
    {
        Options = options;
        _scaling = options.Scaling;
        _a = nn.Linear(layer.InFeatures, options.Rank, hasBias: false, device: layer.Device, dtype: layer.DType);
        _b = nn.Linear(options.Rank, layer.OutFeatures, hasBias: false, device: layer.Device, dtype: layer.DType);
        Reset();
        owner.register_module("lora_A", _a);
        owner.register_module("lora_B", _b);

        // addmm_ takes alpha as a float; for float64 layers whose scaling is not exactly a float, scale the rank-sized
        // intermediate in double precision instead.
        _alphaArgument = (float)_scaling;
        _preScale = _a.weight.dtype == ScalarType.Float64 && _alphaArgument != _scaling;
    }

    public LoRAOptions Options { get; }

    public double Scaling => _scaling;

    public Parameter A => _a.weight;

    public Parameter B => _b.weight;

    /// <summary>PEFT's initialisation: A kaiming-uniform (a = √5), or normal with std 1/r for Gaussian; B zeros, or
    /// kaiming-uniform too for Random (PEFT's init_lora_weights=False). PiSSA and OLoRA start at zero here: their factors
    /// come from the base weight when the adapter joins its layer (<see cref="LoRABaseInitialization"/>).</summary>
    public void Reset()
    {
        using var noGrad = torch.no_grad();
        if (Options.RewritesBase)
        {
            nn.init.zeros_(_a.weight);
            nn.init.zeros_(_b.weight);
            return;
        }

        if (Options.Init == LoRAInit.Gaussian)
        {
            nn.init.normal_(_a.weight, mean: 0.0, std: 1.0 / Options.Rank);
        }
        else
        {
            nn.init.kaiming_uniform_(_a.weight, a: Math.Sqrt(5));
        }

        if (Options.Init == LoRAInit.Random)
        {
            nn.init.kaiming_uniform_(_b.weight, a: Math.Sqrt(5));
        }
        else
        {
            nn.init.zeros_(_b.weight);
        }
    }

    /// <summary><c>output += s · (x Aᵀ) upᵀ</c> in place, with <paramref name="up"/> = B or a row-scaled B.</summary>
    public void AddTo(Tensor x, Tensor output, Tensor up)
    {
        using var h = F.linear(x, _a.weight);
        using var upT = up.t();
        if (_preScale)
        {
            h.mul_(_scaling);
            output.addmm_(h, upT, beta: 1, alpha: 1);
        }
        else
        {
            output.addmm_(h, upT, beta: 1, alpha: _alphaArgument);
        }
    }

    /// <summary><c>s · B A</c> <c>[out, in]</c>; the caller disposes it.</summary>
    public Tensor Delta()
    {
        var delta = _b.weight.matmul(_a.weight);
        delta.mul_(_scaling);
        return delta;
    }

    /// <summary>The dropped-out input in training mode with a positive dropout, else null (use the input as is).</summary>
    public Tensor? Dropout(Tensor input, bool training)
        => Options.Dropout > 0 && training ? F.dropout(input, Options.Dropout, training: true) : null;
}
