using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Core;

public class TrainabilityTests
{
    private static Dictionary<string, bool> RequiresGrad(nn.Module m) =>
        m.named_parameters().ToDictionary(p => p.name, p => p.parameter.requires_grad);

    [Fact]
    public void OnlyAdaptersAndTrainableMembersRequireGradAfterInitializePeft()
    {
        var block = new TinyBlock();
        var grads = RequiresGrad(block);

        var expectedTrainable = new[]
        {
            "q_proj.default.lora_A.weight", "q_proj.default.lora_B.weight",
            "v_proj.default.lokr_w1", "v_proj.default.lokr_w2",
            "head.weight", "head.bias",
        };
        Assert.Equal(expectedTrainable.OrderBy(s => s, StringComparer.Ordinal),
            grads.Where(kv => kv.Value).Select(kv => kv.Key).OrderBy(s => s, StringComparer.Ordinal));
        Assert.False(grads["q_proj.weight"]);
        Assert.False(grads["q_proj.bias"]);
        Assert.False(grads["o_proj.weight"]);
        Assert.False(grads["norm.weight"]);
    }

    [Fact]
    public void RootWithoutAttributesIsFrozenByEntryPointsExceptAdaptersAndTrainableMembers()
    {
        var root = new TinyRoot();

        // The block's InitializePeft only saw its own subtree; the root's embedding is still trainable.
        Assert.True(root.named_parameters().Single(p => p.name == "embed.weight").parameter.requires_grad);

        var trainable = root.TrainableParameters().ToList();
        Assert.False(root.named_parameters().Single(p => p.name == "embed.weight").parameter.requires_grad);
        Assert.Equal(6, trainable.Count);
        Assert.Equal(128 + 32 + 68, trainable.Sum(p => p.numel()));
    }

    [Fact]
    public void SummaryMatchesPeftsFormatExactly()
    {
        var block = new TinyBlock();
        var summary = block.GetTrainableSummary();
        Assert.Equal(228, summary.TrainableParameters);
        Assert.Equal(1076, summary.AllParameters);
        Assert.Equal("trainable params: 228 || all params: 1,076 || trainable%: 21.1896", summary.ToString());

        var root = new TinyRoot();
        Assert.Equal("trainable params: 228 || all params: 1,588 || trainable%: 14.3577", root.GetTrainableSummary().ToString());

        var writer = new StringWriter();
        root.PrintTrainableParameters(writer);
        Assert.Equal("trainable params: 228 || all params: 1,588 || trainable%: 14.3577" + Environment.NewLine, writer.ToString());
    }

    [Fact]
    public void SummaryUsesInvariantCultureAndHandlesLargeAndEmptyCounts()
    {
        var previous = Thread.CurrentThread.CurrentCulture;
        try
        {
            Thread.CurrentThread.CurrentCulture = new System.Globalization.CultureInfo("de-DE");
            var s = new TrainableParameterSummary(1_234, 56_789);
            Assert.Equal("trainable params: 1,234 || all params: 56,789 || trainable%: 2.1730", s.ToString());
            Assert.Equal("trainable params: 0 || all params: 0 || trainable%: 0.0000", new TrainableParameterSummary(0, 0).ToString());
            Assert.Equal("trainable params: 4,194,304 || all params: 3,212,749,824 || trainable%: 0.1306",
                new TrainableParameterSummary(4_194_304, 3_212_749_824).ToString());
        }
        finally
        {
            Thread.CurrentThread.CurrentCulture = previous;
        }
    }

    [Fact]
    public void FrozenClassFreezesItsAdaptersToo()
    {
        var block = new FrozenClassBlock();
        Assert.All(block.parameters(), p => Assert.False(p.requires_grad));
        Assert.Equal(0, block.GetTrainableSummary().TrainableParameters);
    }

    [Fact]
    public void FreezeMemberWinsInsideATrainableSubtreeAndAdaptersInsideItAreFrozen()
    {
        var inner = new Holder(
            new PeftModuleDescriptor("Inner", false, new[] { "a" }, Array.Empty<string>(), Array.Empty<PeftAdapterDeclaration>()),
            ("a", AdaptedLinear.Wrap(nn.Linear(4, 4), "a").WithLoRA("default", new LoRAOptions(Rank: 2))),
            ("b", nn.Linear(4, 4)));
        var outer = new Holder(
            new PeftModuleDescriptor("Outer", false, Array.Empty<string>(), new[] { "inner" }, Array.Empty<PeftAdapterDeclaration>()),
            ("inner", inner),
            ("c", AdaptedLinear.Wrap(nn.Linear(4, 4), "c").WithLoRA("default", new LoRAOptions(Rank: 2))));
        outer.ApplyTrainability();

        var grads = RequiresGrad(outer);
        Assert.False(grads["inner.a.weight"]);
        Assert.False(grads["inner.a.default.lora_A.weight"]);
        Assert.True(grads["inner.b.weight"]);
        Assert.True(grads["inner.b.bias"]);
        Assert.False(grads["c.weight"]);
        Assert.True(grads["c.default.lora_B.weight"]);
    }

    [Fact]
    public void ApplyTrainabilityIsIdempotentAndRestoresAfterManualChanges()
    {
        var block = new TinyBlock();
        var first = RequiresGrad(block);
        block.ApplyTrainability();
        Assert.Equal(first, RequiresGrad(block));

        foreach (var p in block.parameters())
        {
            p.requires_grad = true;
        }

        block.ApplyTrainability();
        Assert.Equal(first, RequiresGrad(block));
    }

    [Fact]
    public void WithoutAdaptersOnlyFreezeAndTrainableApply()
    {
        var model = new Holder(
            new PeftModuleDescriptor("M", false, new[] { "frozen" }, Array.Empty<string>(), Array.Empty<PeftAdapterDeclaration>()),
            ("frozen", nn.Linear(4, 4)),
            ("free", nn.Linear(4, 4)));
        model.ApplyTrainability();
        var grads = RequiresGrad(model);
        Assert.False(grads["frozen.weight"]);
        Assert.True(grads["free.weight"]);
    }

    [Fact]
    public void OnlyTheActiveAdapterTrainsAndDisablingFreezesAdapters()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 8), "q_proj")
            .WithLoRA("a", new LoRAOptions(Rank: 2))
            .WithLoRA("b", new LoRAOptions(Rank: 2));
        var model = new Holder(null, ("q_proj", layer));
        model.ApplyTrainability();
        var grads = RequiresGrad(model);
        Assert.True(grads["q_proj.a.lora_A.weight"]);
        Assert.False(grads["q_proj.b.lora_A.weight"]);

        model.SetActiveAdapter("b");
        grads = RequiresGrad(model);
        Assert.False(grads["q_proj.a.lora_A.weight"]);
        Assert.True(grads["q_proj.b.lora_A.weight"]);

        using (model.DisableAdapters())
        {
            Assert.All(model.parameters(), p => Assert.False(p.requires_grad));
        }

        Assert.True(RequiresGrad(model)["q_proj.b.lora_B.weight"]);
    }

    [Fact]
    public void BaseWeightsGetNoGradientWhileAdaptersDo()
    {
        torch.manual_seed(5);
        var block = new TinyBlock();
        TensorAssert.Randomize(((LoRAAdapter)block.Q.Adapters[0]).B);
        using var x = torch.randn(3, 16);
        using var y = block.call(x);
        using var loss = y.square().sum();
        loss.backward();

        Assert.Null(block.Q.Weight.grad);
        Assert.Null(block.Q.Bias!.grad);
        Assert.Null(block.V.Weight.grad);
        var lora = (LoRAAdapter)block.Q.Adapters[0];
        Assert.NotNull(lora.A.grad);
        Assert.NotNull(lora.B.grad);
        using var gnorm = lora.A.grad!.abs().sum();
        Assert.True(gnorm.item<float>() > 0);
    }

    /// <summary>A hand-written module with an optional descriptor and explicitly registered children.</summary>
    private sealed class Holder : nn.Module<Tensor, Tensor>, IPeftModule
    {
        private readonly PeftModuleDescriptor? _descriptor;

        public Holder(PeftModuleDescriptor? descriptor, params (string Name, nn.Module Module)[] children)
            : base("Holder")
        {
            _descriptor = descriptor;
            foreach (var (name, module) in children)
            {
                register_module(name, module);
            }
        }

        public PeftModuleDescriptor PeftDescriptor =>
            _descriptor ?? new PeftModuleDescriptor("Holder", false, Array.Empty<string>(), Array.Empty<string>(), Array.Empty<PeftAdapterDeclaration>());

        public override Tensor forward(Tensor x) => x.alias();

        protected override void RegisterComponents()
        {
        }
    }
}
