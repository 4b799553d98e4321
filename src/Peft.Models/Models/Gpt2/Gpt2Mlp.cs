using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Gpt2;

/// <summary>
/// GPT-2's feed-forward (<c>mlp</c>): <c>dropout(c_proj(act(c_fc(x))))</c> with biases, <c>c_fc</c> [n_embd → n_inner],
/// <c>c_proj</c> [n_inner → n_embd]. Both are <c>Conv1D</c> in transformers and <c>Linear</c> here (transposed on load/save).
/// <see cref="AdaptableAttribute"/>: both can be adapted by configuration (<see cref="PeftTargeting.ApplyTargets"/>).
/// </summary>
[Adaptable]
public sealed partial class Gpt2Mlp : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> c_fc;
    private Module<Tensor, Tensor> c_proj;
    private readonly string _activation;
    private readonly double _residDrop;

    /// <summary>Creates the feed-forward for <paramref name="config"/>.</summary>
    /// <param name="config">Model sizes.</param>
    public Gpt2Mlp(Gpt2Config config) : base(nameof(Gpt2Mlp))
    {
        ArgumentNullException.ThrowIfNull(config);
        c_fc = Linear(config.NEmbd, config.InnerSize);
        c_proj = Linear(config.InnerSize, config.NEmbd);
        _activation = config.ActivationFunction;
        _residDrop = config.ResidPdrop;
        InitializePeft();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = c_proj.call(Gpt2Activation.Apply(_activation, c_fc.call(x)));
        return functional.dropout(h, _residDrop, training).MoveToOuterDisposeScope();
    }
}
