using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>
/// Llama's SwiGLU feed-forward (<c>mlp</c>): <c>down_proj(silu(gate_proj(x)) * up_proj(x))</c>, biases only with <c>mlp_bias</c>.
/// <see cref="AdaptableAttribute"/>: <c>gate_proj</c>, <c>up_proj</c> and <c>down_proj</c> can be adapted by
/// configuration (<see cref="PeftTargeting.ApplyTargets"/>, docs/targets.md).
/// </summary>
[Adaptable]
public sealed partial class LlamaMlp : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> gate_proj;
    private Module<Tensor, Tensor> up_proj;
    private Module<Tensor, Tensor> down_proj;

    /// <summary>Creates the feed-forward for <paramref name="config"/>.</summary>
    /// <param name="config">Model sizes.</param>
    public LlamaMlp(LlamaConfig config) : base(nameof(LlamaMlp))
    {
        ArgumentNullException.ThrowIfNull(config);
        gate_proj = Linear(config.HiddenSize, config.IntermediateSize, hasBias: config.MlpBias);
        up_proj = Linear(config.HiddenSize, config.IntermediateSize, hasBias: config.MlpBias);
        down_proj = Linear(config.IntermediateSize, config.HiddenSize, hasBias: config.MlpBias);
        InitializePeft();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(functional.silu(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}
