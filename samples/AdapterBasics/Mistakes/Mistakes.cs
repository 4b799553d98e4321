using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

// Deliberate mistakes: built only with -p:PeftShowMistakes=true, where each must fail the build with its ID.
namespace AdapterBasics.Mistakes;

/// <summary>PEFT0004: rank 64 is larger than min(in, out) = 8. Hugging Face PEFT accepts it and fails at the first forward.</summary>
public sealed partial class RankTooLarge : Module<Tensor, Tensor>
{
    [LoRA(rank: 64)] private Module<Tensor, Tensor> proj = Linear(16, 8);

    public RankTooLarge() : base(nameof(RankTooLarge)) => InitializePeft();

    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0007: the generator can only add code to a partial class.</summary>
public sealed class NotPartial : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> proj = Linear(8, 8);

    public NotPartial() : base(nameof(NotPartial)) => RegisterComponents();

    public override Tensor forward(Tensor x) => proj.call(x);
}
