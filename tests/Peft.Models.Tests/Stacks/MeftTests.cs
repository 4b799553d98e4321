using Peft.Models.Tests.Bert;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Stacks;

/// <summary>
/// MEFT (catalogue 4.3) on the stack-runner seam: the hand-computed reversible layer, gradients of the reversible backward
/// against ordinary autograd of the same function on every family (with dropout replayed), the base model back when the
/// adapter is disabled or deleted, files, and refusals.
/// </summary>
public sealed class MeftTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> Families => StackFamilies.All;

    /// <summary>
    /// F(x) = x (a block whose sub-layer outputs zero and whose feed-forward adapter is zero), G(x) = 2x (relu adapter with
    /// dense1 = [1, −1]ᵀ, dense2 = [2, −2]), x₁ = x₂ = 1, λ = β = 0.1: y₁ = 0.1 + 1 = 1.1, y₂ = 0.1 + 2·1.1 = 2.3; the stack
    /// returns (y₁ + y₂)/2 = 1.7; out = (0.3x₁ + 3.1x₂)/2 = 0.15x₁ + 1.55x₂, so d out/d h = 1.7; the backward rebuilds (1, 1)
    /// up to fp32 rounding ((2.3 − 2.2)/0.1).
    /// </summary>
    [Fact]
    public void HandComputedReversibleLayer()
    {
        using var model = new IdentityStack();
        var runner = model.AddMeft(new MeftConfig(AdapterBottleneckDim: 2, HiddenAct: "relu"));
        using (no_grad())
        {
            var g = runner.ReversibleAdapters[0];
            g.Dense1.weight!.copy_(tensor(new float[] { 1, -1 }).reshape(2, 1));
            g.Dense1.bias!.zero_();
            g.Dense2.weight!.copy_(tensor(new float[] { 2, -2 }).reshape(1, 2));
            g.Dense2.bias!.zero_();
            var f = runner.FeedForwardAdapters[0];
            f.Dense2.weight!.zero_();
            f.Dense2.bias!.zero_();
        }

        runner.MeasureReconstruction = true;
        var h = tensor(new float[] { 1f }).reshape(1, 1).requires_grad_(true);
        using var y = model.call(h);
        Assert.Equal(1.7f, y.item<float>(), 6);
        y.backward();
        Assert.Equal(1, runner.ReversibleBackwards);
        Assert.Equal(1.7f, h.grad!.item<float>(), 5);
        Assert.True(runner.ReconstructionErrors.Single() < 2e-5, $"rebuilt (1, 1) off by {runner.ReconstructionErrors.Single()}");   // fp32: (2.3 - 2.2)/0.1

        // dy/d dense2 of G: out = (y₁ + y₂)/2 with y₂ = βx₂ + G(y₁): d out/d G = 1/2, G = W₂ relu(W₁ y₁), relu(W₁ y₁) = [1.1, 0].
        var grad = runner.ReversibleAdapters[0].Dense2.weight!.grad!;
        Assert.Equal(0.55f, grad[0, 0].item<float>(), 5);
        Assert.Equal(0f, grad[0, 1].item<float>(), 6);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void ReversibleGradientsEqualAutogradOfThePlainForward(string family)
    {
        var (reversible, revRunner) = Build(family, numRevLayers: null);
        var (plain, plainRunner) = Build(family, numRevLayers: 0);
        using (reversible)
        using (plain)
        {
            revRunner.MeasureReconstruction = true;
            manual_seed(77);
            using (var y = StackFamilies.Run(family, reversible)) using (var loss = y.pow(2).mean()) loss.backward();
            manual_seed(77);
            using (var y = StackFamilies.Run(family, plain)) using (var loss = y.pow(2).mean()) loss.backward();
            Assert.Equal(1, revRunner.ReversibleBackwards);
            Assert.Equal(0, plainRunner.ReversibleBackwards);

            var expected = plain.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter);
            var actual = reversible.named_parameters().Where(p => p.parameter.requires_grad).ToList();
            Assert.Equal(expected.Keys.Order(), actual.Select(p => p.name).Order());
            double worst = 0;
            foreach (var (name, parameter) in actual)
            {
                var want = expected[name].grad ?? throw new InvalidOperationException($"{name}: no gradient in the plain run");
                var got = parameter.grad ?? throw new InvalidOperationException($"{name}: no gradient in the reversible run");
                double diff = (got - want).abs().max().item<float>();
                worst = Math.Max(worst, diff);
                Assert.True(diff <= 1e-5, $"{family} {name}: reversible and autograd gradients differ by {diff}");
            }

            Assert.Contains(actual, p => p.parameter.grad!.abs().max().item<float>() > 0);
            output.WriteLine($"{family}: max |grad difference| {worst:E2}; reconstruction error per block (max |x - x_rebuilt|): " +
                string.Join(", ", revRunner.ReconstructionErrors.Select(e => e.ToString("E2", System.Globalization.CultureInfo.InvariantCulture))));
            // Each rebuilt input divides by λ = β = 0.1, so fp32 rounding grows tenfold per block downwards (catalogue 4.3).
            Assert.All(revRunner.ReconstructionErrors, e => Assert.True(e < 1e-2, $"{family}: reconstruction error {e}"));
        }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void DisabledOrDeletedMeftIsTheBaseModelAndOnlyTheAdaptersTrain(string family)
    {
        using var reference = StackFamilies.Create(family);
        using var model = StackFamilies.Create(family);
        var runner = model.AddMeft(new MeftConfig(AdapterBottleneckDim: 4));
        var (_, stack) = TransformerStacks.Find(model);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad && !p.name.StartsWith("classifier.", StringComparison.Ordinal)).ToList();
        long width = StackWidth(model);
        Assert.Equal(family == "uselite" ? 1 : 0, runner.First);   // USE-lite's first layer widens 256 -> 512 and stays an ordinary block
        Assert.Equal((stack.Blocks.Count - runner.First) * new MeftConfig(AdapterBottleneckDim: 4).CountParameters(width), trainable.Sum(p => p.parameter.numel()));
        Assert.All(trainable, p => Assert.Matches(@"\.(rev_adapters|output_adapters\.adapters)\.default\.dense[12]\.", p.name));

        using var y0 = StackFamilies.Run(family, reference);
        using (var y1 = StackFamilies.Run(family, model)) Assert.False(y0.eq(y1).all().item<bool>(), $"{family}: MEFT did not change the output");
        using (model.DisableAdapters())
        using (var y2 = StackFamilies.Run(family, model)) Assert.True(y0.eq(y2).all().item<bool>(), $"{family}: the disabled MEFT is not the base model");
        Assert.Throws<PeftConfigurationException>(() => model.Merge());

        model.DeleteAdapter("default");
        Assert.Null(model.MeftOf());
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains(".default.", StringComparison.Ordinal));
        using (var y3 = StackFamilies.Run(family, model)) Assert.True(y0.eq(y3).all().item<bool>(), $"{family}: the deleted MEFT left a change");
    }

    [Fact]
    public void SaveAndLoadRoundTripAndAMismatchedFileIsRefused()
    {
        string dir = Path.Combine(Path.GetTempPath(), "meft-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var model = StackFamilies.Create("llama");
            model.AddMeft(new MeftConfig(MeftVariant.Meft2, X1Factor: 1, X2Factor: 0.1, AdapterBottleneckDim: 4, NumRevLayers: 1, LayernormInAdapter: true), "rev");
            using (no_grad()) foreach (var p in model.parameters().Where(p => p.requires_grad)) p.add_(0.01f);
            model.SaveMeft(dir);
            var json = File.ReadAllText(Path.Combine(dir, MeftFiles.ConfigFileName));
            Assert.Contains("\"f_arch\": \"adapter\"", json, StringComparison.Ordinal);
            Assert.Contains("\"num_rev_layers\": 1", json, StringComparison.Ordinal);

            using var loaded = StackFamilies.Create("llama");
            var runner = loaded.LoadMeft(dir);
            Assert.Equal("rev", runner.AdapterName);
            Assert.Equal(MeftVariant.Meft2, runner.Config.Variant);
            using (var a = StackFamilies.Run("llama", model))
            using (var b = StackFamilies.Run("llama", loaded)) Assert.True(a.eq(b).all().item<bool>());

            // Another model's file: every difference named, nothing added.
            using var bert = StackFamilies.Create("bert");
            var error = Assert.Throws<Peft.Serialization.TensorMismatchException>(() => bert.LoadMeft(dir));
            Assert.Contains("missing", error.Message, StringComparison.Ordinal);
            Assert.Null(bert.MeftOf());
            Assert.Contains("rev_adapters.rev.dense1.weight", error.Message, StringComparison.Ordinal);

            // A bad field names the file and the field.
            File.WriteAllText(Path.Combine(dir, MeftFiles.ConfigFileName), json.Replace("\"adapter\"", "\"attn\"", StringComparison.Ordinal));
            var bad = Assert.ThrowsAny<Exception>(() => StackFamilies.Create("llama").LoadMeft(dir));
            Assert.Contains("MEFT3", bad.Message, StringComparison.Ordinal);
            Assert.Contains(MeftFiles.ConfigFileName, bad.Message, StringComparison.Ordinal);

            // A missing or mistyped field is named in the message, with what it must be.
            File.WriteAllText(Path.Combine(dir, MeftFiles.ConfigFileName), json.Replace("\"x1_factor\"", "\"x1\"", StringComparison.Ordinal));
            var missing = Assert.Throws<Peft.Serialization.AdapterFormatException>(() => StackFamilies.Create("llama").LoadMeft(dir));
            Assert.Contains("\"x1_factor\" is missing; it must be a finite number", missing.Message, StringComparison.Ordinal);
            File.WriteAllText(Path.Combine(dir, MeftFiles.ConfigFileName), json.Replace("\"num_rev_layers\": 1", "\"num_rev_layers\": \"one\"", StringComparison.Ordinal));
            var mistyped = Assert.Throws<Peft.Serialization.AdapterFormatException>(() => StackFamilies.Create("llama").LoadMeft(dir));
            Assert.Equal("num_rev_layers", mistyped.Field);
            Assert.Contains("\"num_rev_layers\" must be an integer", mistyped.Message, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void BadConfigurationsAreRefusedNamingTheField()
    {
        using var model = StackFamilies.Create("gpt2");
        // Constant arguments are compile errors (PEFT0040 to PEFT0042); this is the run-time check behind them.
#pragma warning disable PEFT0040, PEFT0041, PEFT0042
        Assert.Contains("x1_factor = 0", Assert.Throws<PeftConfigurationException>(() => model.AddMeft(new MeftConfig(X1Factor: 0))).Message, StringComparison.Ordinal);
        Assert.Contains("MEFT3", Assert.Throws<PeftConfigurationException>(() => model.AddMeft(new MeftConfig(MeftVariant.Meft3))).Message, StringComparison.Ordinal);
        Assert.Contains("num_rev_layers = 9", Assert.Throws<PeftConfigurationException>(() => model.AddMeft(new MeftConfig(NumRevLayers: 9))).Message, StringComparison.Ordinal);
        Assert.Contains("hidden_act", Assert.Throws<PeftConfigurationException>(() => model.AddMeft(new MeftConfig(HiddenAct: "swish"))).Message, StringComparison.Ordinal);
#pragma warning restore PEFT0040, PEFT0041, PEFT0042
        Assert.Null(model.MeftOf());
        model.AddMeft(new MeftConfig());
        Assert.Contains("a stack takes one MEFT", Assert.Throws<PeftConfigurationException>(() => model.AddMeft(new MeftConfig(), "second")).Message, StringComparison.Ordinal);
    }

    private static (nn.Module Model, MeftRunner Runner) Build(string family, int? numRevLayers)
    {
        var model = family == "bert" ? TinyBert.Create(5, dropout: 0.1) : StackFamilies.Create(family);
        manual_seed(11);
        var runner = model.AddMeft(new MeftConfig(AdapterBottleneckDim: 4, NumRevLayers: numRevLayers, AdapterDropout: 0.1));
        model.train();
        return (model, runner);
    }

    private static long StackWidth(nn.Module model)
    {
        var (_, blocks) = TransformerBlocks.Find(model);
        return blocks[0].Insertions.Features(Sublayer.FeedForward).Output;
    }

    /// <summary>A one-block stack whose block is the identity: its only sub-layer outputs zero before the residual add.</summary>
    private sealed class IdentityStack : nn.Module<Tensor, Tensor>, ITransformerStack
    {
        private readonly ModuleList<IdentityBlock> blocks = new(new IdentityBlock());

        public IdentityStack() : base(nameof(IdentityStack)) => RegisterComponents();

        public IReadOnlyList<nn.Module> EmbeddingModules => [];

        public IReadOnlyList<nn.Module> Blocks => blocks.Cast<nn.Module>().ToArray();

        public override Tensor forward(Tensor x) => this.RunBlocks(x, this.GradientFreeBlocks(), (i, h) => blocks[i].call(h));
    }

    private sealed class IdentityBlock : nn.Module<Tensor, Tensor>, ITransformerBlock
    {
        public IdentityBlock() : base(nameof(IdentityBlock)) => Insertions = new BlockInsertions(this, 1, 1, 1, 1);

        public BlockInsertions Insertions { get; }

        public override Tensor forward(Tensor x) => x + Insertions.AfterFeedForward(x, zeros_like(x));
    }
}
