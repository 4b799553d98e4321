using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>
/// Llama's RMSNorm: <c>weight * x / sqrt(mean(x²) + eps)</c>, computed in float32 and cast back to the input dtype,
/// as transformers' <c>LlamaRMSNorm</c> does. Its one parameter is <c>weight</c>.
/// </summary>
public sealed class LlamaRmsNorm : Module<Tensor, Tensor>
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

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inputType = x.dtype;
        var h = x.to_type(ScalarType.Float32);
        var variance = h.pow(2).mean(new long[] { -1 }, keepdim: true);
        h = h * rsqrt(variance + _eps);
        return (weight * h.to_type(inputType)).MoveToOuterDisposeScope();
    }
}
