using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.SVFit;

/// <summary>
/// SVFit (catalogue 2.7) against hand-computed values and its formula: the catalogue's W = diag(3, 1) example (σ = 3 gives W,
/// σ = 5 gives diag(5, 1)), the rank chosen by energy, the output at init equal to the original layer's, gradients (σ only),
/// merge and unmerge on the residual, and the refused arguments.
/// </summary>
public class SVFitTests
{
    private static AdaptedLinear Layer(Tensor weight, bool bias = false)
    {
        var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: bias, dtype: weight.dtype);
        using (torch.no_grad()) linear.weight!.copy_(weight);
        var layer = AdaptedLinear.Wrap(linear, "q_proj");
        layer.Weight.requires_grad = false;
        if (layer.Bias is { } b) b.requires_grad = false;
        return layer;
    }

    private static SVFitAdapter Adapter(AdaptedLinear layer) => (SVFitAdapter)layer.GetAdapter("default");

    [Fact]
    public void CatalogueExampleDiag31WithRank1()
    {
        // W = diag(3, 1), r = 1: σ₀ = [3], U_r = ±[1, 0]ᵀ, V_rᵀ = ±[1, 0] (same sign), W_res = diag(0, 1).
        using var w = torch.tensor(new double[,] { { 3, 0 }, { 0, 1 } });
        using var layer = Layer(w);
        using var x = torch.tensor(new double[,] { { 1, 2 }, { -1, 4 } });
        layer.WithAdapter("default", new SVFitOptions(Rank: 1));
        var a = Adapter(layer);
        TensorAssert.Close(torch.tensor(new double[] { 3 }), a.Sigma, 1e-12);
        double sign = Math.Sign(a.U[0, 0].item<double>());
        TensorAssert.Close(torch.tensor(new double[,] { { sign }, { 0 } }), a.U, 1e-12);
        TensorAssert.Close(torch.tensor(new double[,] { { sign, 0 } }), a.Vh, 1e-12);
        using var residual = torch.tensor(new double[,] { { 0, 0 }, { 0, 1 } });
        TensorAssert.Close(residual, layer.Weight, 1e-12);

        // σ = 3 ⇒ the layer computes W: y = x Wᵀ = [[3, 2], [−3, 4]].
        using var atInit = layer.forward(x);
        TensorAssert.Close(torch.tensor(new double[,] { { 3, 2 }, { -3, 4 } }), atInit, 1e-12);

        // σ = 5 ⇒ W' = diag(5, 1): y = [[5, 2], [−5, 4]]; merge writes diag(5, 1), unmerge restores diag(0, 1).
        using (torch.no_grad()) a.Sigma.fill_(5);
        using var trained = layer.forward(x);
        TensorAssert.Close(torch.tensor(new double[,] { { 5, 2 }, { -5, 4 } }), trained, 1e-12);
        layer.Merge();
        TensorAssert.Close(torch.tensor(new double[,] { { 5, 0 }, { 0, 1 } }), layer.Weight, 1e-12);
        layer.Unmerge();
        TensorAssert.Close(residual, layer.Weight, 1e-12);
    }

    [Theory]
    [InlineData(0.99, 2)]   // Σσ² = 100 + 9 + 1 + 0.01 = 110.01; 99% is 108.91: 100 < it ≤ 109
    [InlineData(0.9, 1)]    // 90% is 99.009 ≤ 100
    [InlineData(1.0, 4)]    // 110 < 110.01: every value
    public void TheRankByEnergyIsTheSmallestHoldingTheThreshold(double threshold, int expected)
    {
        using var w = torch.diag(torch.tensor(new double[] { 1, 10, 0.1, 3 }));
        using var layer = Layer(w);
        layer.WithAdapter("default", new SVFitOptions(EnergyThreshold: threshold));
        var a = Adapter(layer);
        Assert.Equal(expected, a.Rank);
        Assert.Equal(expected, a.Options.Rank);
        Assert.Equal(new long[] { expected }, a.Sigma.shape);
        Assert.Equal(new long[] { 4, expected }, a.U.shape);
        Assert.Equal(new long[] { expected, 4 }, a.Vh.shape);
        Assert.Equal(expected, a.TrainableParameterCount);
        Assert.Equal(SVFitRules.ParameterCount(expected), a.TrainableParameterCount);
        Assert.Equal(new[] { 10.0, 3, 1, 0.1 }.Take(expected), a.Sigma.data<double>().ToArray().Select(v => Math.Round(v, 12)));
    }

    [Fact]
    public void EnergyRankRule()
    {
        Assert.Equal(2, SVFitRules.EnergyRank(new[] { 10.0, 3, 1, 0.1 }, 0.99));
        Assert.Equal(1, SVFitRules.EnergyRank(new[] { 0.0, 0 }, 0.99));
        Assert.Equal(3, SVFitRules.EnergyRank(new[] { 1.0, 1, 1 }, 1.0));
        Assert.Equal(0, SVFitRules.EnergyRank(Array.Empty<double>(), 0.5));
    }

    [Fact]
    public void OutputAtInitIsTheOriginalAndMergeEqualsUnmerged()
    {
        using var w = torch.randn(new long[] { 6, 5 }, ScalarType.Float64, generator: new Generator(3));
        using var layer = Layer(w, bias: true);
        using var x = torch.randn(new long[] { 7, 5 }, ScalarType.Float64, generator: new Generator(4));
        using var before = layer.forward(x);
        layer.WithAdapter("default", new SVFitOptions(Rank: 3));
        using var after = layer.forward(x);
        TensorAssert.Close(before, after, 1e-12);
        using var residual = layer.Weight.clone();

        var a = Adapter(layer);
        TensorAssert.Randomize(a.Sigma);
        using var unmerged = layer.forward(x);
        using var delta = a.DeltaWeight();
        using var dense = F.linear(x, residual + delta, layer.Bias);
        TensorAssert.Close(dense, unmerged, 1e-12);
        layer.Merge();
        using var merged = layer.forward(x);
        TensorAssert.Close(unmerged, merged, 1e-12);
        layer.Unmerge();
        TensorAssert.Close(residual, layer.Weight, 1e-12);
    }

    [Fact]
    public void OnlySigmaGetsGradientsAndTheyAreTheFormulas()
    {
        // y = x W_resᵀ + ((x V_r) ⊙ σ) U_rᵀ, loss = Σ y ⊙ g ⇒ ∂σ_i = Σ_n (x V_r)_{n,i} (g U_r)_{n,i}.
        using var w = torch.randn(new long[] { 6, 5 }, ScalarType.Float64, generator: new Generator(8));
        using var layer = Layer(w);
        layer.WithAdapter("default", new SVFitOptions(Rank: 2));
        var a = Adapter(layer);
        Assert.False(a.U.requires_grad);
        Assert.False(a.Vh.requires_grad);
        TensorAssert.Randomize(a.Sigma);
        using var x = torch.randn(new long[] { 4, 5 }, ScalarType.Float64, generator: new Generator(9));
        using var g = torch.randn(new long[] { 4, 6 }, ScalarType.Float64, generator: new Generator(10));
        using var y = layer.forward(x);
        using var loss = (y * g).sum();
        loss.backward();
        using var xv = x.matmul(a.Vh.t());
        using var gu = g.matmul(a.U);
        using var expected = (xv * gu).sum(dim: 0, keepdim: false);
        TensorAssert.Close(expected, a.Sigma.grad!, 1e-12);
        Assert.Null(a.U.grad);
        Assert.Null(a.Vh.grad);
    }

    [Fact]
    public void BadArgumentsAreRefusedNamingTheMemberAndTheFix()
    {
        using var w = torch.randn(3, 4, dtype: ScalarType.Float64);
        using var layer = Layer(w);
        var big = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new SVFitOptions(Rank: 4)));
        Assert.Contains("q_proj", big.Message);
        Assert.Contains("at most 3", big.Message);
        var threshold = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new SVFitOptions(EnergyThreshold: 1.5)));
        Assert.Contains("(0, 1]", threshold.Message);
        var both = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new SVFitOptions(Rank: 2, EnergyThreshold: 0.9)));
        Assert.Contains("only with rank 0", both.Message);
        Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new SVFitOptions(Rank: -1)));
        TensorAssert.Equal(w, layer.Weight);
        Assert.False(layer.HasAdapter("default"));
    }
}
