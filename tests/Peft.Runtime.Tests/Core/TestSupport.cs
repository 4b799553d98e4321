using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Core;

/// <summary>Tensor assertions shared by the runtime tests.</summary>
internal static class TensorAssert
{
    public static double MaxAbsDiff(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var e = expected.detach().to(ScalarType.Float64);
        using var a = actual.detach().to(ScalarType.Float64);
        using var d = (e - a).abs().max();
        return d.item<double>();
    }

    public static void Close(Tensor expected, Tensor actual, double tolerance)
    {
        double diff = MaxAbsDiff(expected, actual);
        Assert.True(diff <= tolerance, $"max |expected - actual| = {diff:E3} exceeds {tolerance:E1}");
    }

    public static void NotClose(Tensor expected, Tensor actual, double atLeast)
    {
        double diff = MaxAbsDiff(expected, actual);
        Assert.True(diff >= atLeast, $"tensors were expected to differ by at least {atLeast:E1}, max diff {diff:E3}");
    }

    public static void Equal(Tensor expected, Tensor actual) => Assert.Equal(0.0, MaxAbsDiff(expected, actual));

    /// <summary>Fills a parameter with random normal values (a stand-in for training updates).</summary>
    public static void Randomize(Tensor parameter, double std = 0.5)
    {
        using var noGrad = torch.no_grad();
        nn.init.normal_(parameter, 0.0, std);
    }
}

/// <summary>
/// A block written exactly as the generator's output for
/// <c>[LoRA(rank: 4, alpha: 8)] q_proj; [Kronecker(rank: 4)] v_proj; o_proj; [Trainable] head; [Freeze] norm</c>.
/// </summary>
internal sealed class TinyBlock : nn.Module<Tensor, Tensor>, IPeftModule
{
    private static readonly PeftModuleDescriptor s_peftDescriptor = new(
        typeName: "TinyBlock", frozenClass: false,
        frozenMembers: new string[] { "norm" }, trainableMembers: new string[] { "head" },
        adapters: new PeftAdapterDeclaration[]
        {
            new("q_proj", "default", "LoRA"),
            new("v_proj", "default", "Kronecker"),
        });

    private nn.Module<Tensor, Tensor> q_proj = nn.Linear(16, 16);
    private nn.Module<Tensor, Tensor> v_proj = nn.Linear(16, 16);
    private nn.Module<Tensor, Tensor> o_proj = nn.Linear(16, 16);
    private nn.Module<Tensor, Tensor> head = nn.Linear(16, 4);
    private nn.Module<Tensor, Tensor> norm = nn.LayerNorm(16);

    public TinyBlock()
        : base(nameof(TinyBlock)) => InitializePeft();

    public PeftModuleDescriptor PeftDescriptor => s_peftDescriptor;

    public AdaptedLinear Q => (AdaptedLinear)q_proj;

    public AdaptedLinear V => (AdaptedLinear)v_proj;

    public override Tensor forward(Tensor x)
    {
        using var q = q_proj.call(x);
        using var v = v_proj.call(x);
        using var sum = q + v;
        using var o = o_proj.call(sum);
        using var n = norm.call(o);
        return head.call(n);
    }

    private void InitializePeft()
    {
        this.q_proj = AdaptedLinear.Wrap(this.q_proj, "q_proj")
            .WithLoRA("default", new LoRAOptions(Rank: 4, Alpha: 8.0, Dropout: 0.0, UseRsLora: false, Init: LoRAInit.KaimingUniform));
        this.v_proj = AdaptedLinear.Wrap(this.v_proj, "v_proj")
            .WithKronecker("default", new KroneckerOptions(Rank: 4, Alpha: 8.0, Factor: -1, DecomposeBoth: false));
        this.register_module("q_proj", this.q_proj);
        this.register_module("v_proj", this.v_proj);
        this.register_module("o_proj", this.o_proj);
        this.register_module("head", this.head);
        this.register_module("norm", this.norm);
        PeftModel.ApplyTrainability(this);
    }
}

/// <summary>A root without attributes (no generated code), holding an embedding and a <see cref="TinyBlock"/>.</summary>
internal sealed class TinyRoot : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> embed = nn.Embedding(32, 16);
    private readonly TinyBlock block = new();

    public TinyRoot()
        : base(nameof(TinyRoot)) => RegisterComponents();

    public TinyBlock Block => block;

    public override Tensor forward(Tensor ids)
    {
        using var e = embed.call(ids);
        return block.call(e);
    }
}

/// <summary>A class marked [Freeze] (frozenClass: true) that nevertheless declares a LoRA adapter.</summary>
internal sealed class FrozenClassBlock : nn.Module<Tensor, Tensor>, IPeftModule
{
    private static readonly PeftModuleDescriptor s_peftDescriptor = new(
        typeName: "FrozenClassBlock", frozenClass: true,
        frozenMembers: Array.Empty<string>(), trainableMembers: Array.Empty<string>(),
        adapters: new PeftAdapterDeclaration[] { new("proj", "default", "LoRA") });

    private nn.Module<Tensor, Tensor> proj = nn.Linear(8, 8);

    public FrozenClassBlock()
        : base(nameof(FrozenClassBlock))
    {
        proj = AdaptedLinear.Wrap(proj, "proj").WithLoRA("default", new LoRAOptions(Rank: 2));
        register_module("proj", proj);
        PeftModel.ApplyTrainability(this);
    }

    public PeftModuleDescriptor PeftDescriptor => s_peftDescriptor;

    public override Tensor forward(Tensor x) => proj.call(x);
}
