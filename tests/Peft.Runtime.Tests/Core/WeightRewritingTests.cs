using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// The <see cref="IWeightRewritingAdapter"/> seam of <see cref="AdaptedLinear"/>, with a test adapter <c>W' = W ⊙ g</c>: one base
/// product with the rewritten weight, gradients to the adapter only, composition with input scaling, additive updates and a
/// second rewriter in merge order, the separate path, and the refusal next to a row-rescaling adapter.
/// </summary>
public class WeightRewritingTests
{
    private static AdaptedLinear Layer(long inF = 3, long outF = 2)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(inF, outF, dtype: ScalarType.Float64), "q_proj");
        TensorAssert.Randomize(layer.Weight);
        TensorAssert.Randomize(layer.Bias!);
        layer.Weight.requires_grad = false;
        layer.Bias!.requires_grad = false;
        return layer;
    }

    private static GateAdapter Gate(AdaptedLinear layer, string name, bool shares = true)
    {
        layer.WithAdapter(name, new GateOptions(shares));
        var gate = (GateAdapter)layer.GetAdapter(name);
        TensorAssert.Randomize(gate.G);
        using var noGrad = torch.no_grad();
        gate.G.abs_().add_(0.5); // away from zero: unmerging divides by G
        return gate;
    }

    [Fact]
    public void ForwardIsOneProductWithTheRewrittenWeightAndOnlyTheAdapterGetsGradients()
    {
        using var layer = Layer();
        var gate = Gate(layer, "g");
        using var x = torch.randn(4, 3, dtype: ScalarType.Float64);
        using var y = layer.forward(x);
        using var wEff = layer.Weight * gate.G;
        using var expected = F.linear(x, wEff, layer.Bias);
        TensorAssert.Close(expected, y, 1e-12);

        using var loss = y.sum();
        loss.backward();
        Assert.Null(layer.Weight.grad);
        using var ones = torch.ones(4, 2, dtype: ScalarType.Float64);
        using var outer = ones.t().matmul(x);
        using var expectedGrad = outer * layer.Weight;
        TensorAssert.Close(expectedGrad, gate.G.grad!, 1e-12);
    }

    [Fact]
    public void ComposesWithInputScalingLoRAAndASecondRewriterInMergeOrder()
    {
        using var layer = Layer();
        var first = Gate(layer, "g1");
        var second = Gate(layer, "g2");
        layer.WithAdapter("ia3", new IA3Options(FeedForward: true));
        layer.WithAdapter("lora", new LoRAOptions(Rank: 1, Alpha: 2));
        foreach (var (_, p) in layer.GetAdapter("ia3").PeftTensors().Concat(layer.GetAdapter("lora").PeftTensors())) TensorAssert.Randomize(p);

        // IA3's unmerge divides by l + 1e-8: a draw near zero (the global generator is shared by parallel tests, so draws
        // vary from run to run) would make the restore check below fail for a reason that is not this test's.
        using (torch.no_grad())
        {
            foreach (var (_, p) in layer.GetAdapter("ia3").PeftTensors()) p.abs_().add_(0.5);
        }

        layer.SetActiveAdapters("g1", "ia3", "g2", "lora");
        using var x = torch.randn(5, 3, dtype: ScalarType.Float64);

        using var gg = first.G * second.G;
        using var wEff = layer.Weight * gg;
        var ia3 = (IScalingAdapter)layer.GetAdapter("ia3");
        using var l = ia3.Scale();
        using var xs = x * l;
        using var delta = ((IAdditiveAdapter)layer.GetAdapter("lora")).DeltaWeight();
        using var baseOut = F.linear(xs, wEff, layer.Bias);
        using var update = F.linear(x, delta);
        using var expected = baseOut + update;
        using (torch.no_grad())
        {
            using var y = layer.forward(x);
            TensorAssert.Close(expected, y, 1e-12);
        }

        using var original = layer.Weight.clone();
        layer.Merge();
        using (torch.no_grad())
        {
            using var merged = layer.forward(x);
            TensorAssert.Close(expected, merged, 1e-12);
        }

        layer.Unmerge();
        TensorAssert.Close(original, layer.Weight, 1e-6);   // IA3's unmerge divides by l + 1e-8, as PEFT's
    }

    [Fact]
    public void AnAdapterThatCannotShareTheProductAddsItsTermSeparately()
    {
        using var layer = Layer();
        var gate = Gate(layer, "g", shares: false);
        using var x = torch.randn(4, 3, dtype: ScalarType.Float64);
        using var y = layer.forward(x);
        using var wEff = layer.Weight * gate.G;
        using var expected = F.linear(x, wEff, layer.Bias);
        TensorAssert.Close(expected, y, 1e-12);
    }

    [Fact]
    public void ARewriterLiveWithARowRescalerIsRefusedNamingTheMember()
    {
        using var layer = Layer();
        Gate(layer, "g");
        layer.WithAdapter("dora", new DoRAOptions(Rank: 1));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.SetActiveAdapters("g", "dora"));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("'g'", ex.Message);
        Assert.Contains("'dora'", ex.Message);
    }

    /// <summary>A test rewriter <c>W' = W ⊙ g</c> (<c>g</c> <c>[out, in]</c>); with <c>shares</c> false it adds
    /// <c>(W ⊙ (g − 1)) x</c> after the base product instead, the same function.</summary>
    private sealed record GateOptions(bool Shares) : PeftAdapterOptions
    {
        public override PeftMethod Method => GateMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new GateAdapter(adapterName, layer, this);
    }

    private sealed class GateAdapter : PeftAdapter, IWeightRewritingAdapter
    {
        private readonly GateOptions _options;

        public GateAdapter(string name, PeftLayerInfo layer, GateOptions options)
            : base(name, layer)
        {
            _options = options;
            G = CreateParameter("gate", layer.OutFeatures, layer.InFeatures);
        }

        public Parameter G { get; }

        public override PeftAdapterOptions Config => _options;

        public bool SharesBaseProduct => _options.Shares;

        public Tensor EffectiveWeight(Tensor weight) => weight * G;

        public void AddSeparately(Tensor input, Tensor output, Tensor weight)
        {
            using var minusOne = G - 1;
            using var term = weight * minusOne;
            using var update = F.linear(input, term);
            output.add_(update);
        }

        public void MergeInto(LayerParameters target) => target.Weight.mul_(G);

        public void UnmergeFrom(LayerParameters target) => target.Weight.div_(G);

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("gate", G);
        }
    }

    private sealed class GateMethod : PeftMethod
    {
        public static readonly GateMethod Instance = new();

        public override string Name => "Gate";

        public override string PeftType => "TEST_GATE";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

        public override Type AttributeType => typeof(GateOptions);

        public override Type OptionsType => typeof(GateOptions);

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "gate" };

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

        public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
    }
}
