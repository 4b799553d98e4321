using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>Llama's SwiGLU feed-forward (<c>mlp</c>): <c>down_proj(silu(gate_proj(x)) * up_proj(x))</c>, no bias.</summary>
public sealed class LlamaMlp : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> gate_proj;
    private readonly Module<Tensor, Tensor> up_proj;
    private readonly Module<Tensor, Tensor> down_proj;

    /// <summary>Creates the feed-forward for <paramref name="config"/>.</summary>
    /// <param name="config">Model sizes.</param>
    public LlamaMlp(LlamaConfig config) : base(nameof(LlamaMlp))
    {
        ArgumentNullException.ThrowIfNull(config);
        gate_proj = Linear(config.HiddenSize, config.IntermediateSize, hasBias: false);
        up_proj = Linear(config.HiddenSize, config.IntermediateSize, hasBias: false);
        down_proj = Linear(config.IntermediateSize, config.HiddenSize, hasBias: false);
        register_module(nameof(gate_proj), gate_proj);
        register_module(nameof(up_proj), up_proj);
        register_module(nameof(down_proj), down_proj);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(functional.silu(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}
