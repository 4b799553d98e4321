using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Benchmarks;

/// <summary>Four 1024x1024 linear layers with GELU between them, LoRA rank 8 on each (hidden 1024, as the issue asks).</summary>
public sealed partial class LoRAStack : Module<Tensor, Tensor>
{
    public const int Hidden = 1024;

    [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> l0 = Linear(Hidden, Hidden);
    [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> l1 = Linear(Hidden, Hidden);
    [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> l2 = Linear(Hidden, Hidden);
    [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> l3 = Linear(Hidden, Hidden);

    public LoRAStack() : base(nameof(LoRAStack)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = functional.gelu(l0.call(x));
        h = functional.gelu(l1.call(h));
        h = functional.gelu(l2.call(h));
        return l3.call(h).MoveToOuterDisposeScope();
    }
}

/// <summary>The same stack with plain TorchSharp Linear layers and no PEFT code at all: the baseline.</summary>
public sealed class PlainStack : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> l0 = Linear(LoRAStack.Hidden, LoRAStack.Hidden);
    private readonly Module<Tensor, Tensor> l1 = Linear(LoRAStack.Hidden, LoRAStack.Hidden);
    private readonly Module<Tensor, Tensor> l2 = Linear(LoRAStack.Hidden, LoRAStack.Hidden);
    private readonly Module<Tensor, Tensor> l3 = Linear(LoRAStack.Hidden, LoRAStack.Hidden);

    public PlainStack() : base(nameof(PlainStack)) => RegisterComponents();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = functional.gelu(l0.call(x));
        h = functional.gelu(l1.call(h));
        h = functional.gelu(l2.call(h));
        return l3.call(h).MoveToOuterDisposeScope();
    }
}

/// <summary>One 1024x1024 layer with a Kronecker adapter of rank 8 (factors 32x32, low-rank W2).</summary>
public sealed partial class KroneckerLayer : Module<Tensor, Tensor>
{
    [Kronecker(rank: 8, alpha: 8)] private Module<Tensor, Tensor> proj = Linear(LoRAStack.Hidden, LoRAStack.Hidden);

    public KroneckerLayer() : base(nameof(KroneckerLayer)) => InitializePeft();

    public AdaptedLinear Projection => (AdaptedLinear)proj;

    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>One Linear(1024, 1024) with LoRA rank 8: the unit the memory probe stacks.</summary>
public sealed partial class LoRAStackLayer : Module<Tensor, Tensor>
{
    [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> proj = Linear(LoRAStack.Hidden, LoRAStack.Hidden);

    public LoRAStackLayer() : base(nameof(LoRAStackLayer)) => InitializePeft();

    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>The same four 1024x1024 layers, each after a LayerNorm (a pre-norm stack), with no declared adapter: each method
/// of the methods table is applied to it by configuration targeting (benchmarks/Peft.Benchmarks/Methods.cs).</summary>
[Adaptable]
public sealed partial class AdaptableStack : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> n0 = LayerNorm(LoRAStack.Hidden);
    private Module<Tensor, Tensor> l0 = Linear(LoRAStack.Hidden, LoRAStack.Hidden);
    private Module<Tensor, Tensor> n1 = LayerNorm(LoRAStack.Hidden);
    private Module<Tensor, Tensor> l1 = Linear(LoRAStack.Hidden, LoRAStack.Hidden);
    private Module<Tensor, Tensor> n2 = LayerNorm(LoRAStack.Hidden);
    private Module<Tensor, Tensor> l2 = Linear(LoRAStack.Hidden, LoRAStack.Hidden);
    private Module<Tensor, Tensor> n3 = LayerNorm(LoRAStack.Hidden);
    private Module<Tensor, Tensor> l3 = Linear(LoRAStack.Hidden, LoRAStack.Hidden);

    public AdaptableStack() : base(nameof(AdaptableStack)) => InitializePeft();

    /// <summary>The four norms (for methods that adapt norms).</summary>
    public static TargetModules Norms { get; } = TargetModules.Names("n0", "n1", "n2", "n3");

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = functional.gelu(l0.call(n0.call(x)));
        h = functional.gelu(l1.call(n1.call(h)));
        h = functional.gelu(l2.call(n2.call(h)));
        return l3.call(n3.call(h)).MoveToOuterDisposeScope();
    }
}
