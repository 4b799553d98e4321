using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// The <see cref="IBiasOverrideAdapter"/> and <see cref="IFeatureAffineAdapter"/> seams, with test adapters (a bias copy
/// <c>b'</c>; a scale-and-shift <c>γ ⊙ y + β</c>): the linear forward <c>γ ⊙ ((x Wᵀ + b' + Δx) ⊙ l) + β</c> in merge order,
/// gradients to the adapters only, the norm's folded <c>layer_norm</c>, and the refusal of two bias replacements.
/// </summary>
public class BiasOverrideAndFeatureAffineTests
{
    private static AdaptedLinear Linear()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(3, 2, dtype: ScalarType.Float64), "fc");
        TensorAssert.Randomize(layer.Weight);
        TensorAssert.Randomize(layer.Bias!);
        layer.Weight.requires_grad = false;
        layer.Bias!.requires_grad = false;
        return layer;
    }

    private static T Add<T>(AdaptedLayer layer, string name, bool affine) where T : PeftAdapter
    {
        layer.WithAdapter(name, new TestOptions(affine));
        var adapter = (T)layer.GetAdapter(name);
        foreach (var (_, p) in adapter.PeftTensors()) TensorAssert.Randomize(p);
        return adapter;
    }

    [Fact]
    public void ABiasOverrideRunsTheBaseProductWithItsBiasAndMergesExactly()
    {
        using var layer = Linear();
        var bias = Add<TestBias>(layer, "b", affine: false);
        using var x = torch.randn(4, 3, dtype: ScalarType.Float64);
        using var y = layer.forward(x);
        using var expected = F.linear(x, layer.Weight, bias.B);
        TensorAssert.Close(expected, y, 1e-12);
        using (var loss = y.sum()) loss.backward();
        Assert.Null(layer.Bias!.grad);
        TensorAssert.Close(torch.full(2, 4.0, dtype: ScalarType.Float64), bias.B.grad!, 1e-12);

        using var original = layer.Bias.clone();
        layer.Merge();
        using (torch.no_grad()) TensorAssert.Close(expected, layer.forward(x), 1e-12);
        layer.Unmerge();
        TensorAssert.Equal(original, layer.Bias);
    }

    [Fact]
    public void TheLinearForwardComposesEveryStageInMergeOrder()
    {
        using var layer = Linear();
        var bias = Add<TestBias>(layer, "b", affine: false);
        var first = Add<TestAffine>(layer, "ssf1", affine: true);
        var second = Add<TestAffine>(layer, "ssf2", affine: true);
        layer.WithAdapter("ia3", new IA3Options());
        layer.WithAdapter("lora", new LoRAOptions(Rank: 1, Alpha: 2));
        foreach (var (_, p) in layer.GetAdapter("ia3").PeftTensors().Concat(layer.GetAdapter("lora").PeftTensors())) TensorAssert.Randomize(p);
        // Unmerging divides by the scales (IA3's l + 1e-8, the affines' γ): keep them at least 0.5 from zero, so the 1e-6
        // round trip below holds for any draw (a draw near zero amplified float error past it now and then).
        using (torch.no_grad())
        {
            foreach (var (_, p) in layer.GetAdapter("ia3").PeftTensors()) p.abs_().add_(0.5);
            first.Scale.abs_().add_(0.5);
            second.Scale.abs_().add_(0.5);
        }

        layer.SetActiveAdapters("ssf2", "b", "ia3", "ssf1", "lora");   // activation order of the two affines: ssf2, then ssf1
        using var x = torch.randn(5, 3, dtype: ScalarType.Float64);

        Tensor expected;
        using (torch.no_grad())
        {
            using var delta = ((IAdditiveAdapter)layer.GetAdapter("lora")).DeltaWeight();
            using var l = ((IScalingAdapter)layer.GetAdapter("ia3")).Scale();
            using var inner = (F.linear(x, layer.Weight, bias.B) + F.linear(x, delta)) * l;
            using var afterSecond = inner * second.Scale + second.Shift;
            expected = afterSecond * first.Scale + first.Shift;
            TensorAssert.Close(expected, layer.forward(x), 1e-12);
        }

        using var w0 = layer.Weight.clone();
        using var b0 = layer.Bias!.clone();
        layer.Merge();
        using (torch.no_grad()) TensorAssert.Close(expected, layer.forward(x), 1e-12);
        layer.Unmerge();
        TensorAssert.Close(w0, layer.Weight, 1e-6);   // IA3's unmerge divides by l + 1e-8
        TensorAssert.Close(b0, layer.Bias!, 1e-6);
        expected.Dispose();
    }

    [Fact]
    public void TwoBiasReplacementsAreRefusedNamingTheMember()
    {
        using var layer = Linear();
        Add<TestBias>(layer, "b1", affine: false);
        Add<TestBias>(layer, "b2", affine: false);
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.SetActiveAdapters("b1", "b2"));
        Assert.Contains("'fc'", ex.Message);
        Assert.Contains("'b1', 'b2'", ex.Message);

        using var norm = AdaptedNorm.Wrap(nn.LayerNorm(4, dtype: ScalarType.Float64), "ln");
        Add<TestBias>(norm, "b", affine: false);
        norm.WithAdapter("ln", new LNTuningOptions());
        var onNorm = Assert.Throws<PeftConfigurationException>(() => norm.SetActiveAdapters("b", "ln"));
        Assert.Contains("only one adapter can replace its parameters", onNorm.Message);
    }

    [Fact]
    public void OnALayerNormTheScaleAndShiftFoldIntoItsParametersWithABiasOrAnOverride()
    {
        using var norm = AdaptedNorm.Wrap(nn.LayerNorm(4, dtype: ScalarType.Float64), "ln");
        TensorAssert.Randomize(norm.Weight);
        TensorAssert.Randomize(norm.Bias!);
        norm.Weight.requires_grad = false;
        norm.Bias!.requires_grad = false;
        var affine = Add<TestAffine>(norm, "ssf", affine: true);
        var bias = Add<TestBias>(norm, "b", affine: false);
        norm.SetActiveAdapters("ssf", "b");
        using var x = torch.randn(3, 4, dtype: ScalarType.Float64);
        using var y = norm.forward(x);
        using var plain = F.layer_norm(x, new long[] { 4 }, norm.Weight, bias.B, 1e-5);
        using var expected = plain * affine.Scale + affine.Shift;
        TensorAssert.Close(expected, y, 1e-12);
        using (var loss = y.square().sum()) loss.backward();
        Assert.NotNull(affine.Scale.grad);
        Assert.NotNull(affine.Shift.grad);
        Assert.NotNull(bias.B.grad);
        Assert.Null(norm.Weight.grad);

        MergeRoundTrip(norm, x, expected);
    }

    private static void MergeRoundTrip(AdaptedLayer layer, Tensor x, Tensor expected)
    {
        using var w0 = layer.Weight.clone();
        using var b0 = layer.Bias!.clone();
        layer.Merge();
        using (torch.no_grad()) TensorAssert.Close(expected, layer.forward(x), 1e-12);
        layer.Unmerge();
        TensorAssert.Close(w0, layer.Weight, 1e-12);
        TensorAssert.Close(b0, layer.Bias!, 1e-12);
    }

    /// <summary>Options of both test adapters.</summary>
    private sealed record TestOptions(bool Affine) : PeftAdapterOptions
    {
        public override PeftMethod Method => TestMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer)
            => Affine ? new TestAffine(adapterName, layer, this) : new TestBias(adapterName, layer, this);
    }

    /// <summary>A bias copy <c>b'</c> that replaces the layer's bias; merge writes it and keeps the original.</summary>
    private sealed class TestBias : PeftAdapter, IBiasOverrideAdapter
    {
        private readonly TestOptions _options;
        private Tensor? _original;

        public TestBias(string name, PeftLayerInfo layer, TestOptions options) : base(name, layer)
        {
            _options = options;
            B = CreateParameter("test_bias", layer.OutFeatures);
        }

        public Parameter B { get; }

        public Tensor Bias => B;

        public override PeftAdapterOptions Config => _options;

        public void MergeInto(LayerParameters target)
        {
            _original = target.Bias!.clone();
            target.Bias.copy_(B);
        }

        public void UnmergeFrom(LayerParameters target) => target.Bias!.copy_(_original!);

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("test_bias", B);
        }
    }

    /// <summary><c>γ ⊙ y + β</c>; merge <c>W' = diag(γ) W</c> (a norm's <c>γ ⊙ w</c>), <c>b' = γ ⊙ b + β</c>.</summary>
    private sealed class TestAffine : PeftAdapter, IFeatureAffineAdapter
    {
        private readonly TestOptions _options;

        public TestAffine(string name, PeftLayerInfo layer, TestOptions options) : base(name, layer)
        {
            _options = options;
            G = CreateParameter("test_scale", layer.OutFeatures);
            Beta = CreateParameter("test_shift", layer.OutFeatures);
        }

        public Parameter G { get; }

        public Parameter Beta { get; }

        public Tensor Scale => G;

        public Tensor Shift => Beta;

        public override PeftAdapterOptions Config => _options;

        public void MergeInto(LayerParameters target)
        {
            using var rows = target.Weight.dim() == 2 ? G.unsqueeze(1) : G.alias();
            target.Weight.mul_(rows);
            target.Bias!.mul_(G).add_(Beta);
        }

        public void UnmergeFrom(LayerParameters target)
        {
            using var rows = target.Weight.dim() == 2 ? G.unsqueeze(1) : G.alias();
            target.Weight.div_(rows);
            target.Bias!.sub_(Beta).div_(G);
        }

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("test_scale", G);
            yield return ("test_shift", Beta);
        }
    }

    private sealed class TestMethod : PeftMethod
    {
        public static readonly TestMethod Instance = new();

        public override string Name => "TestAffine";

        public override string PeftType => "TEST_AFFINE";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Linear | PeftLayerKind.Norm;

        public override Type AttributeType => typeof(TestOptions);

        public override Type OptionsType => typeof(TestOptions);

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "test_bias", "test_scale", "test_shift" };

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

        public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
    }
}
