using Peft.Runtime.Tests.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.LoRA;

public class LoRATests
{
    private static (AdaptedLinear Layer, LoRAAdapter Adapter) Make(long inF, long outF, LoRAOptions options, bool bias = true)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(inF, outF, hasBias: bias), "q_proj").WithLoRA("default", options);
        return (layer, (LoRAAdapter)layer.GetAdapter("default"));
    }

    /// <summary>x Wᵀ + b + s·(x Aᵀ) Bᵀ, computed from the parameters with plain matrix products.</summary>
    private static Tensor Formula(Tensor x, AdaptedLinear layer, LoRAAdapter a)
    {
        using var noGrad = torch.no_grad();
        using var baseOut = x.matmul(layer.Weight.t());
        using var h = x.matmul(a.A.t());
        using var delta = h.matmul(a.B.t());
        var y = baseOut + delta * a.Scaling;
        if (layer.Bias is not null)
        {
            y.add_(layer.Bias);
        }

        return y;
    }

    [Theory]
    [InlineData(8, 8.0, false, 1.0)]
    [InlineData(4, 16.0, false, 4.0)]
    [InlineData(4, 16.0, true, 8.0)]
    [InlineData(8, 8.0, true, 2.8284271247461903)]
    public void ScalingIsAlphaOverRankOrOverSqrtRank(int rank, double alpha, bool rs, double expected)
    {
        Assert.Equal(expected, new LoRAOptions(Rank: rank, Alpha: alpha, UseRsLora: rs).Scaling, 12);
    }

    [Theory]
    [InlineData(0, 8.0, 0.0, "rank must be positive")]
    [InlineData(4, 0.0, 0.0, "alpha must be positive")]
    [InlineData(4, double.NaN, 0.0, "alpha must be positive")]
    [InlineData(4, double.PositiveInfinity, 0.0, "alpha must be positive")]
    [InlineData(4, 8.0, 1.0, "dropout must be in [0, 1)")]
    [InlineData(4, 8.0, -0.1, "dropout must be in [0, 1)")]
    [InlineData(17, 8.0, 0.0, "rank 17 exceeds min(in_features=32, out_features=16) = 16")]
    public void InvalidOptionsAreRejectedWhenAttached(int rank, double alpha, double dropout, string expected)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(32, 16), "q_proj");
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithLoRA("default", new LoRAOptions(rank, alpha, dropout)));
        Assert.Contains(expected, ex.Message);
        Assert.Contains("'default' on member 'q_proj'", ex.Message);
        Assert.Empty(layer.Adapters);
    }

    [Fact]
    public void InitialisationMatchesPeft()
    {
        torch.manual_seed(11);
        var (_, a) = Make(64, 32, new LoRAOptions(Rank: 8));
        Assert.Equal(new long[] { 8, 64 }, a.A.shape);
        Assert.Equal(new long[] { 32, 8 }, a.B.shape);

        // kaiming_uniform_(a = √5): U(-1/√fan_in, 1/√fan_in), fan_in = 64.
        using var maxA = a.A.abs().max();
        Assert.True(maxA.item<float>() <= 1.0 / 8.0 + 1e-7);
        Assert.True(maxA.item<float>() > 0.1);
        using var zeros = torch.zeros_like(a.B);
        TensorAssert.Equal(zeros, a.B);

        var (_, g) = Make(4096, 4096, new LoRAOptions(Rank: 4, Init: LoRAInit.Gaussian));
        using var std = g.A.std();
        Assert.InRange(std.item<float>(), 0.25 * 0.97, 0.25 * 1.03);
    }

    [Fact]
    public void AdaptedLayerEqualsBaseAtInit()
    {
        torch.manual_seed(12);
        var linear = nn.Linear(16, 12);
        using var x = torch.randn(5, 16);
        using var expected = linear.call(x);
        var layer = AdaptedLinear.Wrap(linear, "q_proj").WithLoRA("default", new LoRAOptions(Rank: 4, Alpha: 32));
        using var actual = layer.call(x);
        TensorAssert.Equal(expected, actual);
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    public void ForwardEqualsTheFormula(bool rsLora, bool bias)
    {
        torch.manual_seed(13);
        var (layer, a) = Make(16, 12, new LoRAOptions(Rank: 4, Alpha: 6, UseRsLora: rsLora), bias);
        TensorAssert.Randomize(a.B);
        using var x = torch.randn(7, 16);
        using var expected = Formula(x, layer, a);
        using var actual = layer.call(x);
        TensorAssert.Close(expected, actual, 1e-5);

        using var baseOut = F.linear(x, layer.Weight, layer.Bias);
        TensorAssert.NotClose(baseOut, actual, 1e-2);
    }

    [Fact]
    public void Float64LayersKeepDoublePrecisionScaling()
    {
        torch.manual_seed(14);
        var layer = AdaptedLinear.Wrap(nn.Linear(16, 12, dtype: ScalarType.Float64), "q_proj")
            .WithLoRA("default", new LoRAOptions(Rank: 3, Alpha: 7, UseRsLora: true));
        var a = (LoRAAdapter)layer.Adapters[0];
        TensorAssert.Randomize(a.B);
        using var x = torch.randn(7, 16, dtype: ScalarType.Float64);
        using var expected = Formula(x, layer, a);
        using var actual = layer.call(x);
        TensorAssert.Close(expected, actual, 1e-12);
    }

    [Fact]
    public void GradientsMatchTheAnalyticFormulas()
    {
        torch.manual_seed(15);
        var (layer, a) = Make(10, 6, new LoRAOptions(Rank: 3, Alpha: 5));
        TensorAssert.Randomize(a.B);
        var model = new Wrapper(layer);
        model.ApplyTrainability();

        using var x = torch.randn(4, 10, requires_grad: true);
        using var g = torch.randn(4, 6);
        using var y = layer.call(x);
        using var prod = y * g;
        using var loss = prod.sum();
        loss.backward();

        double s = a.Scaling;
        using var noGrad = torch.no_grad();
        using var h = x.matmul(a.A.t());                            // [N, r]
        using var dB = g.t().matmul(h) * s;                         // s · gᵀ (x Aᵀ)
        using var dA = a.B.t().matmul(g.t()).matmul(x) * s;         // s · (Bᵀ gᵀ) x
        using var dX = g.matmul(layer.Weight) + g.matmul(a.B).matmul(a.A) * s;
        TensorAssert.Close(dB, a.B.grad!, 1e-5);
        TensorAssert.Close(dA, a.A.grad!, 1e-5);
        TensorAssert.Close(dX, x.grad!, 1e-5);
        Assert.Null(layer.Weight.grad);
        Assert.Null(layer.Bias!.grad);
    }

    [Fact]
    public void GradientsFlowForThreeDimensionalInputs()
    {
        torch.manual_seed(16);
        var (layer, a) = Make(10, 6, new LoRAOptions(Rank: 3, Alpha: 5));
        TensorAssert.Randomize(a.B);
        using var x = torch.randn(2, 3, 10);
        using var g = torch.randn(2, 3, 6);
        using var y = layer.call(x);
        using var loss = (y * g).sum();
        loss.backward();

        using var noGrad = torch.no_grad();
        using var x2 = x.reshape(6, 10);
        using var g2 = g.reshape(6, 6);
        using var dB = g2.t().matmul(x2.matmul(a.A.t())) * a.Scaling;
        TensorAssert.Close(dB, a.B.grad!, 1e-5);
    }

    [Fact]
    public void DropoutAppliesOnlyInTrainingMode()
    {
        torch.manual_seed(17);
        var (layer, a) = Make(64, 64, new LoRAOptions(Rank: 8, Dropout: 0.5));
        TensorAssert.Randomize(a.B);
        using var x = torch.randn(16, 64);
        using var expected = Formula(x, layer, a);

        layer.eval();
        using var evalOut = layer.call(x);
        TensorAssert.Close(expected, evalOut, 1e-4);

        layer.train();
        using var trainOut = layer.call(x);
        TensorAssert.NotClose(expected, trainOut, 1e-2);
    }

    [Fact]
    public void MergeEqualsTheUnmergedForwardAndUnmergeRestoresTheWeight()
    {
        torch.manual_seed(18);
        var (layer, a) = Make(16, 12, new LoRAOptions(Rank: 4, Alpha: 8));
        TensorAssert.Randomize(a.A);
        TensorAssert.Randomize(a.B);
        using var original = layer.Weight.detach().clone();
        using var x = torch.randn(5, 16);
        using var unmerged = layer.call(x);

        layer.Merge();
        Assert.True(a.Merged);
        Assert.Equal(new[] { "default" }, layer.MergedAdapters);
        using var merged = layer.call(x);
        TensorAssert.Close(unmerged, merged, 1e-4);

        // A merged layer computes exactly the base linear with the merged weight.
        using var plain = F.linear(x, layer.Weight, layer.Bias);
        TensorAssert.Equal(plain, merged);
        using (var delta = a.DeltaWeight())
        using (var expectedW = original + delta)
        {
            TensorAssert.Close(expectedW, layer.Weight, 1e-5);
        }

        layer.Unmerge();
        Assert.False(a.Merged);
        TensorAssert.Close(original, layer.Weight, 1e-5);
        using var again = layer.call(x);
        TensorAssert.Close(unmerged, again, 1e-5);
    }

    [Fact]
    public void DeltaWeightIsScaledBTimesA()
    {
        torch.manual_seed(19);
        var (_, a) = Make(16, 12, new LoRAOptions(Rank: 4, Alpha: 3));
        TensorAssert.Randomize(a.B);
        using var delta = a.DeltaWeight();
        using var expected = a.B.matmul(a.A) * 0.75;
        Assert.Equal(new long[] { 12, 16 }, delta.shape);
        TensorAssert.Close(expected, delta, 1e-6);
    }

    [Fact]
    public void SafeMergeRefusesNaNAndLeavesTheWeightUnchanged()
    {
        torch.manual_seed(20);
        var (layer, a) = Make(8, 8, new LoRAOptions(Rank: 2));
        using (torch.no_grad())
        {
            a.B.fill_(double.NaN);
        }

        using var original = layer.Weight.detach().clone();
        var ex = Assert.Throws<InvalidOperationException>(() => layer.Merge());
        Assert.Contains("'q_proj'", ex.Message);
        Assert.Contains("'default'", ex.Message);
        TensorAssert.Equal(original, layer.Weight);
        Assert.False(a.Merged);

        layer.Merge(safeMerge: false);
        using var nan = layer.Weight.isnan().any();
        Assert.True(nan.item<bool>());
    }

    [Fact]
    public void PeftTensorNamesAndStateDictKeys()
    {
        var (layer, a) = Make(8, 6, new LoRAOptions(Rank: 2));
        Assert.Equal(new[] { "lora_A.weight", "lora_B.weight" }, a.PeftTensors().Select(t => t.PeftName));
        Assert.Same(a.A, a.PeftTensors().First().Parameter);
        Assert.Equal(2 * 8 + 6 * 2, a.TrainableParameterCount);
        Assert.Same(LoRAMethod.Instance, a.Method);
        Assert.Same(a.Options, a.Config);
        var model = new Wrapper(layer);
        Assert.Contains("q_proj.default.lora_A.weight", model.state_dict().Keys);
        Assert.Contains("q_proj.weight", model.state_dict().Keys);
    }

    private sealed class Wrapper : nn.Module<Tensor, Tensor>
    {
        private readonly AdaptedLinear _layer;

        public Wrapper(AdaptedLinear layer)
            : base("Wrapper")
        {
            _layer = layer;
            register_module("q_proj", layer);
        }

        public override Tensor forward(Tensor x) => _layer.call(x);

        protected override void RegisterComponents()
        {
        }
    }
}
