using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

// Deliberate mistakes: compiled only with -p:PeftShowMistakes=true, where each must fail the build with its ID
// (tests/Peft.EndToEnd.Tests checks every one). One class per mistake so each diagnostic stands alone.
namespace AdapterBasics.Mistakes;

/// <summary>PEFT0001: a rank must be positive.</summary>
public sealed partial class RankZero : Module<Tensor, Tensor>
{
    [LoRA(rank: 0)] private Module<Tensor, Tensor> proj = Linear(16, 16);
    public RankZero() : base(nameof(RankZero)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0002: alpha must be positive.</summary>
public sealed partial class NegativeAlpha : Module<Tensor, Tensor>
{
    [LoRA(rank: 4, alpha: -1)] private Module<Tensor, Tensor> proj = Linear(16, 16);
    public NegativeAlpha() : base(nameof(NegativeAlpha)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0003: dropout must be in [0, 1).</summary>
public sealed partial class DropoutOne : Module<Tensor, Tensor>
{
    [LoRA(rank: 4, dropout: 1.0)] private Module<Tensor, Tensor> proj = Linear(16, 16);
    public DropoutOne() : base(nameof(DropoutOne)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0004: rank 64 is larger than min(in, out) = 8. Hugging Face PEFT accepts it and fails at the first forward.</summary>
public sealed partial class RankTooLarge : Module<Tensor, Tensor>
{
    [LoRA(rank: 64)] private Module<Tensor, Tensor> proj = Linear(16, 8);
    public RankTooLarge() : base(nameof(RankTooLarge)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0005: a Kronecker factor of 3 does not divide 16.</summary>
public sealed partial class FactorDoesNotDivide : Module<Tensor, Tensor>
{
    [Kronecker(rank: 2, Factor = 3)] private Module<Tensor, Tensor> proj = Linear(16, 16);
    public FactorDoesNotDivide() : base(nameof(FactorDoesNotDivide)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0006: LoRA adapts Linear layers, not an Embedding.</summary>
public sealed partial class LoRAOnEmbedding : Module<Tensor, Tensor>
{
    [LoRA(rank: 4)] private Module<Tensor, Tensor> embed = Embedding(100, 16);
    public LoRAOnEmbedding() : base(nameof(LoRAOnEmbedding)) => InitializePeft();
    public override Tensor forward(Tensor x) => embed.call(x);
}

/// <summary>PEFT0007: the generator can only add code to a partial class.</summary>
public sealed class NotPartial : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> proj = Linear(8, 8);
    public NotPartial() : base(nameof(NotPartial)) => RegisterComponents();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0008: a frozen member cannot carry an adapter.</summary>
public sealed partial class FrozenAndAdapted : Module<Tensor, Tensor>
{
    [Freeze, LoRA(rank: 2)] private Module<Tensor, Tensor> proj = Linear(8, 8);
    public FrozenAndAdapted() : base(nameof(FrozenAndAdapted)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0009: two adapters with the same name on one layer.</summary>
public sealed partial class DuplicateName : Module<Tensor, Tensor>
{
    [LoRA(rank: 2), LoRA(rank: 4)] private Module<Tensor, Tensor> proj = Linear(8, 8);
    public DuplicateName() : base(nameof(DuplicateName)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0010: 64 * (1024 + 1024) = 131,072 trainable parameters, over the project's budget of 50,000.</summary>
public sealed partial class OverBudget : Module<Tensor, Tensor>
{
    [LoRA(rank: 64)] private Module<Tensor, Tensor> proj = Linear(1024, 1024);
    public OverBudget() : base(nameof(OverBudget)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0012: the generated code replaces the layer with its wrapper, so the field cannot be readonly.</summary>
public sealed partial class ReadonlyField : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private readonly Module<Tensor, Tensor> proj = Linear(8, 8);
    public ReadonlyField() : base(nameof(ReadonlyField)) => RegisterComponents();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>
/// PEFT0013: RegisterComponents() instead of the generated InitializePeft(): the instance would have no adapter and
/// nothing frozen, so an optimizer over parameters() would silently fine-tune everything. An error, not a warning.
/// </summary>
public sealed partial class ForgotInitializePeft : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> proj = Linear(8, 8);
    public ForgotInitializePeft() : base(nameof(ForgotInitializePeft)) => RegisterComponents();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0017: an [Adaptable] class whose linear member is readonly cannot have it replaced by a wrapper.</summary>
[Adaptable]
public sealed partial class ReadonlyAdaptable : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> proj = Linear(8, 8);
    public ReadonlyAdaptable() : base(nameof(ReadonlyAdaptable)) => InitializePeft();
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>PEFT0018: "dwn" names no module of TinyMlp (PEFT would silently ignore it next to a matching name).</summary>
public static class MisspelledTarget
{
    public static void Apply(AdapterBasics.TinyMlp model) =>
        model.ApplyTargets(new PeftTargets(TargetModules.Names("up", "dwn")));
}
