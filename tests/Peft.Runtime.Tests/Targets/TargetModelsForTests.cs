using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.Targets;

/// <summary>A block that opts in to targeting with [Adaptable] and holds layers the generated code cannot replace.</summary>
[Adaptable]
internal sealed partial class TargetBlock : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> fc1 = Linear(8, 16);
    private Module<Tensor, Tensor> fc2 = Linear(16, 8);
    private ModuleList<Module<Tensor, Tensor>> heads = new ModuleList<Module<Tensor, Tensor>>(Linear(8, 4), Linear(8, 4));
    private Module<Tensor, Tensor> norm = LayerNorm(8);

    public TargetBlock() : base(nameof(TargetBlock)) => InitializePeft();

    public override Tensor forward(Tensor x) => norm.call(fc2.call(functional.relu(fc1.call(x))));
}

/// <summary>A model root without PEFT attributes (registers by hand), with an lm_head and a generated child with a [LoRA].</summary>
internal sealed class TargetRoot : Module<Tensor, Tensor>
{
    private readonly TargetBlock block;
    private readonly AttributedBlock attributed;
    private readonly Linear lm_head;

    public TargetRoot() : base(nameof(TargetRoot))
    {
        block = new TargetBlock();
        attributed = new AttributedBlock();
        lm_head = Linear(8, 5);
        register_module(nameof(block), block);
        register_module(nameof(attributed), attributed);
        register_module(nameof(lm_head), lm_head);
    }

    public TargetBlock Block => block;

    public override Tensor forward(Tensor x) => lm_head.call(attributed.call(block.call(x)));
}

/// <summary>A generated class (it has a [LoRA] member) whose other linear member is readonly.</summary>
internal sealed partial class AttributedBlock : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4)] private Module<Tensor, Tensor> proj = Linear(8, 8);
    private readonly Module<Tensor, Tensor> frozenProj = Linear(8, 8);

    public AttributedBlock() : base(nameof(AttributedBlock)) => InitializePeft();

    public override Tensor forward(Tensor x) => frozenProj.call(proj.call(x));
}

/// <summary>A generated root whose [Freeze] encoder and [Trainable] head are whole modules with linear layers inside.</summary>
internal sealed partial class FreezeAndTrainRoot : Module<Tensor, Tensor>
{
    [Freeze] private Module<Tensor, Tensor> encoder = new TargetBlock();
    [Trainable] private Module<Tensor, Tensor> head = new TargetBlock();
    [LoRA(rank: 2)] private Module<Tensor, Tensor> proj = Linear(8, 8);

    public FreezeAndTrainRoot() : base(nameof(FreezeAndTrainRoot)) => InitializePeft();

    public override Tensor forward(Tensor x) => head.call(proj.call(encoder.call(x)));
}
