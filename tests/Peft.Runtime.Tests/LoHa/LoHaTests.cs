using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.LoHa;

/// <summary>LoHa against its formula (PEFT's loha/layer.py): <c>ΔW = (alpha/r)·(W1a W1b) ⊙ (W2a W2b)</c>, with a hand-computed
/// example, the Khatri-Rao forward against the dense update, gradients against the closed form, merge and the dropouts.</summary>
public class LoHaTests
{
    private static (AdaptedLinear Layer, LoHaAdapter Adapter) Make(long inF, long outF, LoHaOptions options, ScalarType dtype = ScalarType.Float32)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(inF, outF, dtype: dtype), "v_proj").WithLoHa("default", options);
        return (layer, (LoHaAdapter)layer.GetAdapter("default"));
    }

    private static void RandomizeAll(LoHaAdapter a)
    {
        foreach (var (_, p) in a.PeftTensors()) TensorAssert.Randomize(p, 0.3);
    }

    private static void Set(Tensor parameter, float[] values)
    {
        using var noGrad = torch.no_grad();
        using var t = torch.tensor(values, parameter.shape);
        parameter.copy_(t);
    }

    /// <summary>The dense update from the parameters, differentiable: s·(W1a W1b) ⊙ (W2a W2b).</summary>
    private static Tensor Dense(LoHaAdapter a) => a.W1A.matmul(a.W1B) * a.W2A.matmul(a.W2B) * a.Scaling;

    /// <summary>w1_a=[[1],[2]], w1_b=[[1,1]], w2_a=[[1],[0]], w2_b=[[3,4]] on W = I₂, b = [1, 0].</summary>
    private static (AdaptedLinear Layer, LoHaAdapter Adapter) HandExample(double alpha)
    {
        var (layer, a) = Make(2, 2, new LoHaOptions(Rank: 1, Alpha: alpha));
        Set(layer.Weight, new float[] { 1, 0, 0, 1 });
        Set(layer.Bias!, new float[] { 1, 0 });
        Set(a.W1A, new float[] { 1, 2 });
        Set(a.W1B, new float[] { 1, 1 });
        Set(a.W2A, new float[] { 1, 0 });
        Set(a.W2B, new float[] { 3, 4 });
        return (layer, a);
    }

    [Fact]
    public void TheHandComputedExampleGivesDeltaW34_00AndItsForward()
    {
        // W1a W1b = [[1,1],[2,2]], W2a W2b = [[3,4],[0,0]], Hadamard = [[3,4],[0,0]]; alpha = r = 1.
        var (layer, a) = HandExample(alpha: 1);
        using var expectedDelta = torch.tensor(new float[] { 3, 4, 0, 0 }, new long[] { 2, 2 });
        using (var delta = a.DeltaWeight()) TensorAssert.Equal(expectedDelta, delta);

        // Face-splitting factors: U = W1a ⊙ W2a = [[1],[0]], Vᵀ = W1b ⊙ W2b = [[3,4]].
        var (u, vt) = a.KhatriRaoFactors();
        using (u)
        using (vt)
        {
            TensorAssert.Equal(torch.tensor(new float[] { 1, 0 }, new long[] { 2, 1 }), u);
            TensorAssert.Equal(torch.tensor(new float[] { 3, 4 }, new long[] { 1, 2 }), vt);
        }

        // x = [1, 1]: W x + b = [2, 1], ΔW x = [7, 0] ⇒ y = [9, 1].
        using var x = torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 });
        using (var y = layer.call(x)) TensorAssert.Equal(torch.tensor(new float[] { 9, 1 }, new long[] { 1, 2 }), y);

        // alpha = 2 doubles the update: y = [2, 1] + [14, 0] = [16, 1].
        var (doubled, _) = HandExample(alpha: 2);
        using (var y = doubled.call(x)) TensorAssert.Equal(torch.tensor(new float[] { 16, 1 }, new long[] { 1, 2 }), y);
    }

    [Fact]
    public void ParametersHavePeftsNamesShapesAndCount()
    {
        var (layer, a) = Make(16, 24, new LoHaOptions(Rank: 4));
        var names = new[] { "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b" };
        Assert.Equal(names, a.PeftTensors().Select(t => t.PeftName));
        Assert.Equal(new long[] { 24, 4, 4, 16, 24, 4, 4, 16 }, a.PeftTensors().SelectMany(t => t.Parameter.shape));
        Assert.Equal(new[] { "weight", "bias" }.Concat(names.Select(n => "default." + n)), layer.state_dict().Keys);
        Assert.Equal(2 * 4 * (16 + 24), a.TrainableParameterCount);
        Assert.Equal(a.TrainableParameterCount, LoHaRules.ParameterCount(16, 24, 4));
        Assert.Equal(names, LoHaMethod.Instance.TensorNames);
    }

    [Fact]
    public void InitialisationMatchesPeftAndTheInitialUpdateIsExactlyZero()
    {
        torch.manual_seed(41);
        var linear = nn.Linear(32, 20);
        using var x = torch.randn(4, 32);
        using var expected = linear.call(x);
        var layer = AdaptedLinear.Wrap(linear, "v_proj").WithLoHa("default", new LoHaOptions(Rank: 8));
        var a = (LoHaAdapter)layer.GetAdapter("default");

        using (var zeros = torch.zeros_like(a.W2B)) TensorAssert.Equal(zeros, a.W2B);

        // kaiming_uniform_(a = √5) on [rows, fan_in] is U(-1/√fan_in, 1/√fan_in): fan_in 8 for W1a, W2a; 32 for W1b.
        foreach (var (p, fanIn) in new[] { (a.W1A, 8), (a.W2A, 8), (a.W1B, 32) })
        {
            using var m = p.abs().max();
            Assert.InRange(m.item<float>(), 0.5 / Math.Sqrt(fanIn), 1 / Math.Sqrt(fanIn) + 1e-6);
        }

        using (var delta = a.DeltaWeight())
        using (var zeros = torch.zeros(20, 32)) TensorAssert.Equal(zeros, delta);
        using var actual = layer.call(x);
        TensorAssert.Equal(expected, actual);
    }

    [Theory]
    [InlineData(32, 20, 4)]
    [InlineData(7, 10, 3)]
    [InlineData(6, 5, 4)]    // r² = 16 > in, out
    [InlineData(1, 1, 1)]
    public void TheKhatriRaoForwardEqualsTheDenseUpdate(int inF, int outF, int rank)
    {
        torch.manual_seed(42);
        var (layer, a) = Make(inF, outF, new LoHaOptions(Rank: rank, Alpha: 6));
        RandomizeAll(a);
        using var noGrad = torch.no_grad();
        using var dense = Dense(a);
        using (var delta = a.DeltaWeight()) TensorAssert.Close(dense, delta, 1e-6);
        var (u, vt) = a.KhatriRaoFactors();
        using (u)
        using (vt)
        using (var product = u.matmul(vt) * a.Scaling)
        {
            Assert.Equal(new long[] { outF, rank * rank }, u.shape);
            Assert.Equal(new long[] { rank * rank, inF }, vt.shape);
            TensorAssert.Close(dense, product, 1e-5);
        }

        using var x = torch.randn(5, inF);
        using var expected = F.linear(x, layer.Weight, layer.Bias) + x.matmul(dense.t());
        using var actual = layer.call(x);
        TensorAssert.Close(expected, actual, 1e-5);

        using var x3 = torch.randn(2, 3, inF);
        using var expected3 = F.linear(x3, layer.Weight, layer.Bias) + x3.matmul(dense.t());
        using var actual3 = layer.call(x3);
        TensorAssert.Close(expected3, actual3, 1e-5);
    }

    [Fact]
    public void Float64WithAScalingThatIsNotAFloatKeepsDoublePrecision()
    {
        torch.manual_seed(43);
        var (layer, a) = Make(9, 7, new LoHaOptions(Rank: 3, Alpha: 1), ScalarType.Float64);   // s = 1/3
        RandomizeAll(a);
        using var noGrad = torch.no_grad();
        using var x = torch.randn(4, 9, dtype: ScalarType.Float64);
        using var dense = Dense(a);
        using var expected = F.linear(x, layer.Weight, layer.Bias) + x.matmul(dense.t());
        using var actual = layer.call(x);
        TensorAssert.Close(expected, actual, 1e-12);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(2)]
    public void GradientsEqualTheDenseFormulaAndTheClosedForm(int rank)
    {
        torch.manual_seed(44);
        var (layer, a) = Make(12, 10, new LoHaOptions(Rank: rank, Alpha: 3), ScalarType.Float64);
        layer.ApplyTrainability();
        RandomizeAll(a);
        using var x = torch.randn(6, 12, dtype: ScalarType.Float64);
        using var g = torch.randn(6, 10, dtype: ScalarType.Float64);
        using (var y = layer.call(x))
        using (var loss = (y * g).sum())
        {
            loss.backward();
        }

        var efficient = a.PeftTensors().Select(t => t.Parameter.grad!.detach().clone()).ToList();
        foreach (var (_, p) in a.PeftTensors()) p.grad = null;

        using (var dense = Dense(a))
        using (var y = F.linear(x, layer.Weight, layer.Bias) + x.matmul(dense.t()))
        using (var loss = (y * g).sum())
        {
            loss.backward();
        }

        var reference = a.PeftTensors().Select(t => t.Parameter.grad!).ToList();
        for (int i = 0; i < reference.Count; i++) TensorAssert.Close(reference[i], efficient[i], 1e-10);

        // PEFT's HadaWeight backward with G = ∂loss/∂ΔW = gᵀ x: T1 = s·G ⊙ (W2a W2b), ∂W1a = T1 W1bᵀ, ∂W1b = W1aᵀ T1, and
        // T2 = s·G ⊙ (W1a W1b), ∂W2a = T2 W2bᵀ, ∂W2b = W2aᵀ T2.
        using var noGrad = torch.no_grad();
        using var grad = g.t().matmul(x) * a.Scaling;
        using var t1 = grad * a.W2A.matmul(a.W2B);
        using var t2 = grad * a.W1A.matmul(a.W1B);
        var closed = new[] { t1.matmul(a.W1B.t()), a.W1A.t().matmul(t1), t2.matmul(a.W2B.t()), a.W2A.t().matmul(t2) };
        for (int i = 0; i < closed.Length; i++)
        {
            using var norm = closed[i].abs().max();
            Assert.True(norm.item<double>() > 0, $"{a.PeftTensors().ElementAt(i).PeftName} has no gradient");
            TensorAssert.Close(closed[i], efficient[i], 1e-10);
            closed[i].Dispose();
        }

        Assert.Null(layer.Weight.grad);
    }

    [Fact]
    public void MergeEqualsTheUnmergedForwardAndUnmergeRestoresTheWeight()
    {
        torch.manual_seed(45);
        var (layer, a) = Make(32, 24, new LoHaOptions(Rank: 4, Alpha: 8));
        RandomizeAll(a);
        using var original = layer.Weight.detach().clone();
        using var x = torch.randn(3, 32);
        using var unmerged = layer.call(x);

        layer.Merge();
        using var merged = layer.call(x);
        TensorAssert.Close(unmerged, merged, 1e-4);
        using (var plain = F.linear(x, layer.Weight, layer.Bias)) TensorAssert.Equal(plain, merged);
        using (var delta = a.DeltaWeight())
        using (var moved = layer.Weight - original) TensorAssert.Close(delta, moved, 1e-5);

        layer.Unmerge();
        TensorAssert.Close(original, layer.Weight, 1e-5);
        using var restored = layer.call(x);
        TensorAssert.Close(unmerged, restored, 1e-5);
    }

    [Fact]
    public void RankDropoutKeepsWholeOutputRowsOfTheUpdateRescaledByOneOverTheFractionKept()
    {
        torch.manual_seed(46);
        const int outF = 40;
        var (layer, a) = Make(16, outF, new LoHaOptions(Rank: 3, Alpha: 3, RankDropout: 0.5));
        RandomizeAll(a);
        using var noGrad = torch.no_grad();
        using var x = torch.randn(5, 16);
        using var dense = Dense(a);
        using var full = x.matmul(dense.t());
        using var basePart = F.linear(x, layer.Weight, layer.Bias);

        layer.eval();
        using (var y = layer.call(x))
        using (var expected = basePart + full) TensorAssert.Close(expected, y, 1e-5);   // no dropout in eval

        layer.train();
        bool sawDropped = false;
        for (int trial = 0; trial < 5; trial++)
        {
            using var y = layer.call(x);
            using var update = y - basePart;
            var kept = Enumerable.Range(0, outF).Where(j => RowMax(update, j) > 1e-6).ToList();
            Assert.NotEmpty(kept);
            sawDropped |= kept.Count < outF;
            double c = (double)outF / kept.Count;   // 1 / mean(mask)
            for (int j = 0; j < outF; j++)
            {
                using var column = full.select(1, j) * (kept.Contains(j) ? c : 0.0);
                TensorAssert.Close(column, update.select(1, j), 1e-4);
            }
        }

        Assert.True(sawDropped, "rank dropout 0.5 never dropped a row in 5 passes");
    }

    [Fact]
    public void ModuleDropoutSkipsTheWholeAdapterForSomePassesInTrainingOnly()
    {
        torch.manual_seed(47);
        var (layer, a) = Make(8, 6, new LoHaOptions(Rank: 2, ModuleDropout: 0.5));
        RandomizeAll(a);
        using var noGrad = torch.no_grad();
        using var x = torch.randn(3, 8);
        using var dense = Dense(a);
        using var basePart = F.linear(x, layer.Weight, layer.Bias);
        using var adapted = basePart + x.matmul(dense.t());

        layer.eval();
        for (int i = 0; i < 20; i++)
        {
            using var y = layer.call(x);
            TensorAssert.Close(adapted, y, 1e-5);
        }

        layer.train();
        int skipped = 0;
        const int passes = 200;
        for (int i = 0; i < passes; i++)
        {
            using var y = layer.call(x);
            if (TensorAssert.MaxAbsDiff(basePart, y) == 0) skipped++;
            else TensorAssert.Close(adapted, y, 1e-5);
        }

        Assert.InRange(skipped, 60, 140);   // Binomial(200, 0.5): mean 100, sd ≈ 7
    }

    [Theory]
    [InlineData(0, 8.0, 0.0, 0.0, "rank must be positive")]
    [InlineData(4, -1.0, 0.0, 0.0, "alpha must be positive")]
    [InlineData(4, 8.0, 1.0, 0.0, "RankDropout must be in [0, 1)")]
    [InlineData(4, 8.0, 0.0, -0.1, "ModuleDropout must be in [0, 1)")]
    public void InvalidOptionsAreRejectedNamingTheMemberAndTheFix(int rank, double alpha, double rankDropout, double moduleDropout, string expected)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(16, 16), "v_proj");
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithLoHa("h", new LoHaOptions(rank, alpha, rankDropout, moduleDropout)));
        Assert.Contains(expected, ex.Message);
        Assert.Contains("'h' on member 'v_proj'", ex.Message);
    }

    private static double RowMax(Tensor update, int column)
    {
        using var c = update.select(1, column).abs().max();
        return c.item<float>();
    }
}

