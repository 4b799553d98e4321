using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace HostedTraining;

/// <summary>A small regressor: a LoRA-adapted hidden layer (with dropout) and a fully trainable head.</summary>
public sealed partial class RegressionModel : Module<Tensor, Tensor>
{
    /// <summary>Input features.</summary>
    public const int Features = 8;

    [LoRA(rank: 4, alpha: 8, dropout: 0.05)] private Module<Tensor, Tensor> hidden = Linear(Features, 32);
    [Trainable] private Module<Tensor, Tensor> head = Linear(32, 1);

    /// <summary>Builds the model; the base weights come from the global generator (seeded by the service).</summary>
    public RegressionModel() : base(nameof(RegressionModel)) => InitializePeft();

    /// <summary>Features [batch, 8] to predictions [batch, 1].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(hidden.call(x))).MoveToOuterDisposeScope();
    }
}
