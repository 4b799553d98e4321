using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>
/// Llama's RMSNorm: <c>weight * x / sqrt(mean(x²) + eps)</c>, computed in float32 and cast back to the input dtype,
/// as transformers' <c>LlamaRMSNorm</c> does. Its one parameter is <c>weight</c>. It implements
/// <see cref="IAdaptableNorm"/>, so configuration targeting can wrap it for LayerNorm tuning
/// (<see cref="LlamaTargets.LayerNormTuning"/>), which runs the same math with the adapter's weight.
/// </summary>
public sealed class LlamaRmsNorm : Module<Tensor, Tensor>, IAdaptableNorm
{
    private readonly Parameter weight;
    private readonly double _eps;

    /// <summary>Creates the norm over the last dimension of width <paramref name="dim"/> (weight starts at one).</summary>
    /// <param name="dim">Width of the normalised dimension.</param>
    /// <param name="eps">The variance epsilon (<c>rms_norm_eps</c>).</param>
    public LlamaRmsNorm(int dim, double eps) : base(nameof(LlamaRmsNorm))
    {
        weight = Parameter(ones(dim));
        _eps = eps;
        register_parameter(nameof(weight), weight);
    }

    /// <summary>The elementwise scale, registered as <c>weight</c>.</summary>
    public Parameter Weight => weight;

    /// <summary>RMSNorm has no bias: null.</summary>
    public Parameter? Bias => null;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Normalize(x, weight, null);

    /// <summary>Normalises <paramref name="input"/> with the given scale (and bias, added after the scale when given).</summary>
    /// <param name="input">Hidden states [..., dim].</param>
    /// <param name="weight">The elementwise scale [dim].</param>
    /// <param name="bias">A bias [dim], or null (Llama's norm has none).</param>
    /// <returns>The normalised states, in the input's dtype.</returns>
    public Tensor Normalize(Tensor input, Tensor weight, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(weight);
        using var scope = NewDisposeScope();
        var inputType = input.dtype;
        var h = input.to_type(ScalarType.Float32);
        var variance = h.pow(2).mean(new long[] { -1 }, keepdim: true);
        h = h * rsqrt(variance + _eps);
        var result = weight * h.to_type(inputType);
        if (bias is not null) result = result + bias;
        return result.MoveToOuterDisposeScope();
    }
}
