using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.LoLDU;

/// <summary>
/// LoLDU (catalogue 2.8) against hand-computed values and its formula: the catalogue's W = [[2, 1], [4, 3]] example (checked
/// by hand: the pivot is row 2), the permutation from LAPACK's pivots, a full-rank LU that leaves a zero residual, the output at
/// init equal to the original layer's, gradients of z and s, merge and unmerge on the residual, and the refused tiny pivot.
/// </summary>
public class LoLDUTests
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

    private static LoLDUAdapter Adapter(AdaptedLinear layer) => (LoLDUAdapter)layer.GetAdapter("default");

    [Fact]
    public void CatalogueExampleWithRank1()
    {
        // W = [[2, 1], [4, 3]]: partial pivoting takes row 2 first, P = [[0, 1], [1, 0]], L = [[1, 0], [0.5, 1]],
        // U = [[4, 3], [0, −0.5]]; D = [4, −0.5], U/D = [[1, 0.75], [0, 1]]. r = 1, α = 1 (s = 1): L_r = [1, 0.5]ᵀ, so the stored
        // P L_r = [0.5, 1]ᵀ, z = D_r = [4], U_r = [1, 0.75]; P L_r z U_r = [[2, 1.5], [4, 3]], W_res = [[0, −0.5], [0, 0]].
        using var w = torch.tensor(new double[,] { { 2, 1 }, { 4, 3 } });
        using var layer = Layer(w);
        using var x = torch.tensor(new double[,] { { 1, 2 }, { -1, 1 } });
        using var before = layer.forward(x);
        layer.WithAdapter("default", new LoLDUOptions(Rank: 1, Alpha: 1));
        var a = Adapter(layer);
        TensorAssert.Close(torch.tensor(new double[,] { { 0.5 }, { 1 } }), a.L, 1e-12);
        TensorAssert.Close(torch.tensor(new double[] { 4 }), a.Z, 1e-12);
        TensorAssert.Close(torch.tensor(new double[] { 1 }), a.ScalingFactor, 1e-12);
        TensorAssert.Close(torch.tensor(new double[,] { { 1, 0.75 } }), a.U, 1e-12);
        TensorAssert.Close(torch.tensor(new double[,] { { 0, -0.5 }, { 0, 0 } }), layer.Weight, 1e-12);

        // W' == W at init: y = x Wᵀ = [[4, 10], [−1, −1]].
        using var after = layer.forward(x);
        TensorAssert.Close(torch.tensor(new double[,] { { 4, 10 }, { -1, -1 } }), after, 1e-12);
        TensorAssert.Close(before, after, 1e-12);

        // z = 6 ⇒ ΔW = [[3, 2.25], [6, 4.5]], W' = [[3, 1.75], [6, 4.5]]; s = 2 doubles ΔW.
        using (torch.no_grad()) a.Z.fill_(6);
        using var delta = a.DeltaWeight();
        TensorAssert.Close(torch.tensor(new double[,] { { 3, 2.25 }, { 6, 4.5 } }), delta, 1e-12);
        using (torch.no_grad()) a.ScalingFactor.fill_(2);
        using var doubled = a.DeltaWeight();
        TensorAssert.Close(delta * 2, doubled, 1e-12);
    }

    [Fact]
    public void ThePermutationComesFromLapacksPivotsWithoutADenseMatrix()
    {
        Assert.Equal(new long[] { 1, 0 }, LoLDURules.RowsOfPermutedL(new long[] { 2, 2 }, 2));
        // Steps swap rows (0, 2) then (1, 2) of a 3-row matrix: Pᵀ W has rows W2, W0, W1, so (P L) rows are L1, L2, L0.
        Assert.Equal(new long[] { 1, 2, 0 }, LoLDURules.RowsOfPermutedL(new long[] { 3, 3, 3 }, 3));
        Assert.Equal(new long[] { 0, 1, 2, 3 }, LoLDURules.RowsOfPermutedL(new long[] { 1, 2 }, 4));
    }

    [Fact]
    public void FullRankWithUnitScalingLeavesAZeroResidualOnATallWeight()
    {
        // r = min(in, out) = 3 and α = r (s = 1): P L D U is the whole weight, so the residual is zero.
        using var w = torch.randn(new long[] { 5, 3 }, ScalarType.Float64, generator: new Generator(11));
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoLDUOptions(Rank: 3, Alpha: 3));
        using var zero = torch.zeros(5, 3, dtype: ScalarType.Float64);
        TensorAssert.Close(zero, layer.Weight, 1e-12);
        using var delta = Adapter(layer).DeltaWeight();
        TensorAssert.Close(w, delta, 1e-12);
    }

    [Fact]
    public void OutputAtInitIsTheOriginalAndMergeEqualsUnmerged()
    {
        using var w = torch.randn(new long[] { 4, 6 }, ScalarType.Float64, generator: new Generator(12));
        using var layer = Layer(w, bias: true);
        using var x = torch.randn(new long[] { 7, 6 }, ScalarType.Float64, generator: new Generator(13));
        using var before = layer.forward(x);
        layer.WithAdapter("default", new LoLDUOptions(Rank: 2, Alpha: 1));
        using var after = layer.forward(x);
        TensorAssert.Close(before, after, 1e-12);
        using var residual = layer.Weight.clone();

        var a = Adapter(layer);
        TensorAssert.Randomize(a.Z);
        using (torch.no_grad()) a.ScalingFactor.fill_(0.7);
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
    public void OnlyZAndTheScalingGetGradientsAndTheyAreTheFormulas()
    {
        // y = x W_resᵀ + ((x U_rᵀ) ⊙ s z)(P L_r)ᵀ, loss = Σ y ⊙ g; with t_i = Σ_n (x U_rᵀ)_{n,i} (g P L_r)_{n,i}:
        // ∂z_i = s t_i, ∂s = Σ_i z_i t_i.
        using var w = torch.randn(new long[] { 6, 5 }, ScalarType.Float64, generator: new Generator(14));
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoLDUOptions(Rank: 3, Alpha: 1.5));
        var a = Adapter(layer);
        Assert.False(a.L.requires_grad);
        Assert.False(a.U.requires_grad);
        using var x = torch.randn(new long[] { 4, 5 }, ScalarType.Float64, generator: new Generator(15));
        using var g = torch.randn(new long[] { 4, 6 }, ScalarType.Float64, generator: new Generator(16));
        using var y = layer.forward(x);
        using var loss = (y * g).sum();
        loss.backward();
        using var xu = x.matmul(a.U.t());
        using var gl = g.matmul(a.L);
        using var t = (xu * gl).sum(dim: 0, keepdim: false);
        double s = a.ScalingFactor.item<double>();
        Assert.Equal(0.5, s, 12);
        TensorAssert.Close(t * s, a.Z.grad!, 1e-12);
        using var ds = (a.Z * t).sum();
        Assert.Equal(ds.item<double>(), a.ScalingFactor.grad!.item<double>(), 10);
        Assert.Null(a.L.grad);
        Assert.Null(a.U.grad);
        Assert.Equal(LoLDURules.ParameterCount(3), a.TrainableParameterCount);
    }

    [Fact]
    public void ATinyPivotIsRefusedNamingTheMemberAndTheRank()
    {
        // [[1, 2], [2, 4]] has rank 1: pivoting takes [2, 4], then 1 − 0.5·2 = 0 and 2 − 0.5·4 = 0, so D₂ = 0.
        using var w = torch.tensor(new double[,] { { 1, 2 }, { 2, 4 } });
        using var layer = Layer(w);
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new LoLDUOptions(Rank: 2)));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("pivot 1", ex.Message);
        Assert.Contains("at most 1", ex.Message);
        TensorAssert.Equal(w, layer.Weight);
        Assert.False(layer.HasAdapter("default"));
        layer.WithAdapter("default", new LoLDUOptions(Rank: 1));   // rank 1 is fine
    }

    [Fact]
    public void BadArgumentsAreRefusedNamingTheMember()
    {
        using var w = torch.randn(3, 4, dtype: ScalarType.Float64);
        using var layer = Layer(w);
        var big = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new LoLDUOptions(Rank: 4)));
        Assert.Contains("q_proj", big.Message);
        Assert.Contains("at most 3", big.Message);
        Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new LoLDUOptions(Rank: 0)));
        Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new LoLDUOptions(Rank: 2, Alpha: 0)));
    }
}
