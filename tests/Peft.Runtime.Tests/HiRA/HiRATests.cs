using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.HiRA;

/// <summary>HiRA against its formula (PEFT's hira/layer.py): <c>W' = W + W ⊙ (B A)</c>, with the hand-computed example, the
/// one-product forward against the dense formula, float64 gradients, merge/unmerge, initialisation and dropout.</summary>
public class HiRATests
{
    private static (AdaptedLinear Layer, HiRAAdapter Adapter) Make(long inF, long outF, HiRAOptions options, ScalarType dtype = ScalarType.Float32)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(inF, outF, dtype: dtype), "v_proj").WithHiRA("default", options);
        return (layer, (HiRAAdapter)layer.GetAdapter("default"));
    }

    private static void RandomizeAll(HiRAAdapter a)
    {
        foreach (var (_, p) in a.PeftTensors()) TensorAssert.Randomize(p, 0.3);
    }

    private static void Set(Tensor parameter, float[] values)
    {
        using var noGrad = torch.no_grad();
        using var t = torch.tensor(values, parameter.shape);
        parameter.copy_(t);
    }

    /// <summary>PEFT's unmerged forward, written out: <c>x Wᵀ + b + x (W ⊙ B A)ᵀ</c> (two full-size products).</summary>
    private static Tensor Dense(AdaptedLinear layer, HiRAAdapter a, Tensor x)
    {
        using var factor = a.B.matmul(a.A);
        using var update = layer.Weight * factor;
        using var basePart = F.linear(x, layer.Weight, layer.Bias);
        using var term = F.linear(x, update);
        return basePart + term;
    }

    [Fact]
    public void TheHandExampleDoublesTheWeightWhenBAIsAllOnes()
    {
        // W₀ = [[1,2],[3,4]], B = [[1],[1]], A = [[1,1]] ⇒ B A = ones ⇒ W' = W₀ + W₀ ⊙ 1 = 2 W₀ = [[2,4],[6,8]].
        var (layer, a) = Make(2, 2, new HiRAOptions(Rank: 1));
        Set(layer.Weight, new float[] { 1, 2, 3, 4 });
        Set(layer.Bias!, new float[] { 1, -1 });
        Set(a.A, new float[] { 1, 1 });
        Set(a.B, new float[] { 1, 1 });
        using var noGrad = torch.no_grad();
        using var twice = torch.tensor(new float[] { 2, 4, 6, 8 }, new long[] { 2, 2 });
        using (var w = a.EffectiveWeight(layer.Weight)) TensorAssert.Equal(twice, w);

        // x = [1, 1]: 2 W₀ x + b = [6, 14] + [1, -1] = [7, 13].
        using var x = torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 });
        using var expected = torch.tensor(new float[] { 7, 13 }, new long[] { 1, 2 });
        using (var y = layer.call(x)) TensorAssert.Equal(expected, y);

        layer.Merge();
        TensorAssert.Equal(twice, layer.Weight);
        using (var y = layer.call(x)) TensorAssert.Equal(expected, y);
        layer.Unmerge();
        using var original = torch.tensor(new float[] { 1, 2, 3, 4 }, new long[] { 2, 2 });
        TensorAssert.Equal(original, layer.Weight);
    }

    [Fact]
    public void ParametersHavePeftsNamesShapesAndCount()
    {
        var (layer, a) = Make(16, 24, new HiRAOptions(Rank: 4));
        Assert.Equal(new[] { "hira_A", "hira_B" }, a.PeftTensors().Select(t => t.PeftName));
        Assert.Equal(new long[] { 4, 16, 24, 4 }, a.PeftTensors().SelectMany(t => t.Parameter.shape));
        Assert.Equal(new[] { "weight", "bias", "default.hira_A", "default.hira_B" }, layer.state_dict().Keys);
        Assert.Equal(4 * (16 + 24), a.TrainableParameterCount);
        Assert.Equal(a.TrainableParameterCount, HiRARules.ParameterCount(16, 24, 4));
        Assert.Equal(new[] { "hira_A", "hira_B" }, HiRAMethod.Instance.TensorNames);
        Assert.Equal(32, new HiRAOptions().Rank);
    }

    [Fact]
    public void InitialisationMatchesPeftAndTheInitialUpdateIsExactlyZero()
    {
        torch.manual_seed(51);
        var linear = nn.Linear(32, 20);
        using var x = torch.randn(4, 32);
        using var expected = linear.call(x);
        var layer = AdaptedLinear.Wrap(linear, "v_proj").WithHiRA("default", new HiRAOptions(Rank: 8));
        var a = (HiRAAdapter)layer.GetAdapter("default");
        using (var zeros = torch.zeros_like(a.B)) TensorAssert.Equal(zeros, a.B);

        // kaiming_uniform_(a = √5) on [r, in] is U(-1/√in, 1/√in).
        using (var m = a.A.abs().max()) Assert.InRange(m.item<float>(), 0.5 / Math.Sqrt(32), 1 / Math.Sqrt(32) + 1e-6);
        using (var factor = a.Factor())
        using (var zeros = torch.zeros(20, 32)) TensorAssert.Equal(zeros, factor);
        using var actual = layer.call(x);
        TensorAssert.Equal(expected, actual);
    }

    [Theory]
    [InlineData(32, 20, 4)]
    [InlineData(7, 10, 3)]
    [InlineData(1, 1, 1)]
    public void TheOneProductForwardEqualsTheDenseFormula(int inF, int outF, int rank)
    {
        torch.manual_seed(52);
        var (layer, a) = Make(inF, outF, new HiRAOptions(Rank: rank), ScalarType.Float64);
        RandomizeAll(a);
        using var noGrad = torch.no_grad();
        using var x = torch.randn(5, inF, dtype: ScalarType.Float64);
        using var expected = Dense(layer, a, x);
        using var actual = layer.call(x);
        TensorAssert.Close(expected, actual, 1e-12);

        using var x3 = torch.randn(2, 3, inF, dtype: ScalarType.Float64);
        using var expected3 = Dense(layer, a, x3);
        using var actual3 = layer.call(x3);
        TensorAssert.Close(expected3, actual3, 1e-12);
    }

    [Fact]
    public void GradientsEqualTheDenseFormulaAndTheClosedFormAndTheBaseWeightGetsNone()
    {
        torch.manual_seed(53);
        var (layer, a) = Make(12, 10, new HiRAOptions(Rank: 3), ScalarType.Float64);
        layer.ApplyTrainability();
        RandomizeAll(a);
        Assert.False(layer.Weight.requires_grad);
        using var x = torch.randn(6, 12, dtype: ScalarType.Float64);
        using var g = torch.randn(6, 10, dtype: ScalarType.Float64);
        using (var y = layer.call(x))
        using (var loss = (y * g).sum())
        {
            loss.backward();
        }

        var efficient = a.PeftTensors().Select(t => t.Parameter.grad!.detach().clone()).ToList();
        foreach (var (_, p) in a.PeftTensors()) p.grad = null;
        using (var y = Dense(layer, a, x))
        using (var loss = (y * g).sum())
        {
            loss.backward();
        }

        var reference = a.PeftTensors().Select(t => t.Parameter.grad!).ToList();
        for (int i = 0; i < reference.Count; i++) TensorAssert.Close(reference[i], efficient[i], 1e-10);

        // Closed form: G = (gᵀ x) ⊙ W₀ = ∂loss/∂(B A); ∂A = Bᵀ G, ∂B = G Aᵀ.
        using var noGrad = torch.no_grad();
        using var outer = g.t().matmul(x);
        using var grad = outer * layer.Weight;
        using var dA = a.B.t().matmul(grad);
        using var dB = grad.matmul(a.A.t());
        TensorAssert.Close(dA, efficient[0], 1e-10);
        TensorAssert.Close(dB, efficient[1], 1e-10);
        Assert.Null(layer.Weight.grad);
        Assert.Null(layer.Bias!.grad);
    }

    [Fact]
    public void MergeEqualsTheUnmergedForwardAndUnmergeRestoresTheWeight()
    {
        torch.manual_seed(54);
        var (layer, a) = Make(32, 24, new HiRAOptions(Rank: 4));
        RandomizeAll(a);
        using var original = layer.Weight.detach().clone();
        using var x = torch.randn(3, 32);
        using var unmerged = layer.call(x);

        layer.Merge();
        using var merged = layer.call(x);
        TensorAssert.Close(unmerged, merged, 1e-4);
        using (var plain = F.linear(x, layer.Weight, layer.Bias)) TensorAssert.Equal(plain, merged);
        using (var noGrad = torch.no_grad())
        using (var factor = a.Factor())
        using (var expected = original + original * factor) TensorAssert.Close(expected, layer.Weight, 1e-5);

        layer.Unmerge();
        // W·(1+BA)/(1+BA): two roundings per entry, relative to |W| (float32: a few 1e-7 · max |W|).
        TensorAssert.Close(original, layer.Weight, 1e-6);
        using var restored = layer.call(x);
        TensorAssert.Close(unmerged, restored, 1e-5);
    }

    [Fact]
    public void AFactorWithAZeroIsNotMergedAndTheWeightIsUnchanged()
    {
        // B A = [[-1, 0], [0, 0]]: 1 + B A has a zero at (0, 0), so merging would erase W[0, 0] for good.
        var (layer, a) = Make(2, 2, new HiRAOptions(Rank: 1));
        Set(a.A, new float[] { 1, 0 });
        Set(a.B, new float[] { -1, 0 });
        using var original = layer.Weight.detach().clone();
        foreach (bool safe in new[] { true, false })
        {
            var ex = Assert.Throws<InvalidOperationException>(() => layer.Merge(safeMerge: safe));
            Assert.Contains("'default' on member 'v_proj'", ex.Message);
            Assert.Contains("1 zero entry", ex.Message);
            TensorAssert.Equal(original, layer.Weight);
            Assert.False(a.Merged);
        }
    }

    [Fact]
    public void DropoutActsOnTheUpdateTermsInputInTrainingOnly()
    {
        torch.manual_seed(55);
        var (layer, a) = Make(64, 6, new HiRAOptions(Rank: 2, Dropout: 0.5), ScalarType.Float64);
        RandomizeAll(a);
        using var noGrad = torch.no_grad();
        using var x = torch.randn(3, 64, dtype: ScalarType.Float64);
        using var adapted = Dense(layer, a, x);
        using var basePart = F.linear(x, layer.Weight, layer.Bias);

        layer.eval();
        Assert.True(a.SharesBaseProduct);
        using (var y = layer.call(x)) TensorAssert.Close(adapted, y, 1e-12);

        layer.train();
        Assert.False(a.SharesBaseProduct);
        using var y1 = layer.call(x);
        using var y2 = layer.call(x);
        TensorAssert.NotClose(y1, y2, 1e-6);   // a new mask each pass
        TensorAssert.NotClose(adapted, y1, 1e-6);
        TensorAssert.NotClose(basePart, y1, 1e-6);
    }

    [Theory]
    [InlineData(0, 0.0, "Rank must be positive")]
    [InlineData(4, 1.0, "Dropout must be in [0, 1)")]
    [InlineData(17, 0.0, "Rank 17 exceeds min(in_features=16, out_features=16) = 16")]
    public void InvalidOptionsAreRejectedNamingTheMemberAndTheFix(int rank, double dropout, string expected)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(16, 16), "v_proj");
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithHiRA("h", new HiRAOptions(rank, dropout)));
        Assert.Contains(expected, ex.Message);
        Assert.Contains("'h' on member 'v_proj'", ex.Message);
    }

    [Fact]
    public void HiRAAndDoRALiveOnOneLayerAreRefused()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 8), "q_proj").WithHiRA("hira", new HiRAOptions(Rank: 2));
        layer.WithAdapter("dora", new DoRAOptions(Rank: 2));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.SetActiveAdapters("hira", "dora"));
        Assert.Contains("'hira' (HiRA) and 'dora' (DoRA) on member 'q_proj' cannot be live together", ex.Message);
    }
}
