using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.SoKA;

/// <summary>
/// SoKA (catalogue 2.22) against hand-computed values: W = A₀ ⊗ B₀ has one Kronecker component (σ₁ = ‖A₀‖_F‖B₀‖_F), which the
/// automatic rank picks and which reconstructs W exactly (the residual is 0); the vec-trick forward and its gradients against
/// the dense <c>Σ w1_k ⊗ w2_k</c>; merge/unmerge on the residual; the energy and elbow rules; the refused arguments.
/// </summary>
public class SoKATests
{
    private static AdaptedLinear Layer(Tensor weight)
    {
        var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: false, dtype: weight.dtype);
        using (torch.no_grad()) linear.weight!.copy_(weight);
        var layer = AdaptedLinear.Wrap(linear, "q_proj");
        layer.Weight.requires_grad = false;
        return layer;
    }

    private static SoKAAdapter Adapter(AdaptedLinear layer) => (SoKAAdapter)layer.GetAdapter("default");

    [Fact]
    public void AKroneckerProductIsOneComponentAndReconstructsExactly()
    {
        // Linear(6, 6) splits as [2, 2] ⊗ [3, 3]; W = A₀ ⊗ B₀ with ‖A₀‖²_F = 30 and ‖B₀‖²_F = 17, so R(W) = vec(A₀) vec(B₀)ᵀ has
        // the one singular value √510 and the automatic rank (energy 1, elbow 2) is 1.
        using var a0 = torch.tensor(new double[,] { { 1, 2 }, { 3, 4 } });
        using var b0 = torch.tensor(new double[,] { { 1, 0, 2 }, { 0, 1, 1 }, { 3, 1, 0 } });
        using var w = torch.kron(a0, b0);
        using var layer = Layer(w);
        layer.WithAdapter("default", new SoKAOptions());
        var a = Adapter(layer);
        Assert.Equal((2, 2, 3, 3), (a.M, a.N, a.P, a.Q));
        Assert.Equal(1, a.Rank);
        Assert.Equal(1, a.Options.Rank);
        Assert.Equal(Math.Sqrt(510), a.KroneckerSpectrum[0], 10);
        Assert.All(a.KroneckerSpectrum.Skip(1), s => Assert.True(s < 1e-12));

        // The residual is zero and the one component is W itself: w1 ⊗ w2 = A₀ ⊗ B₀ (each factor up to a common scale and sign).
        Assert.True(layer.Weight.abs().max().ToDouble() < 1e-12);
        using var delta = a.DeltaWeight();
        TensorAssert.Close(w, delta, 1e-12);
        using var ratio = a.W1[0] / a0;
        TensorAssert.Close(ratio.mean().expand(2, 2), ratio, 1e-12);

        // The layer computes W at init.
        using var x = torch.arange(1.0, 7.0, dtype: ScalarType.Float64).unsqueeze(0);
        using var atInit = layer.forward(x);
        using var expected = x.matmul(w.t());
        TensorAssert.Close(expected, atInit, 1e-10);
    }

    [Fact]
    public void HandForwardMergeAndUnmerge()
    {
        using var w = torch.kron(torch.tensor(new double[,] { { 1, 2 }, { 3, 4 } }), torch.eye(3, dtype: ScalarType.Float64));
        using var layer = Layer(w);
        layer.WithAdapter("default", new SoKAOptions(Rank: 1, Factor: 2));
        var a = Adapter(layer);
        using var residual = layer.Weight.detach().clone();

        // w1 = I₂, w2 = [[1,1,1],[0,0,0],[0,0,0]]: x = [1..6] as X = [[1,2,3],[4,5,6]], w1 X w2ᵀ = [[6,0,0],[15,0,0]].
        using (torch.no_grad())
        {
            a.W1.copy_(torch.eye(2, dtype: ScalarType.Float64).unsqueeze(0));
            a.W2.copy_(torch.tensor(new double[,] { { 1, 1, 1 }, { 0, 0, 0 }, { 0, 0, 0 } }).unsqueeze(0));
        }

        using var x = torch.arange(1.0, 7.0, dtype: ScalarType.Float64).unsqueeze(0);
        using var y = layer.forward(x);
        using var fromResidual = x.matmul(residual.t());
        using var update = y - fromResidual;
        TensorAssert.Close(torch.tensor(new double[,] { { 6, 0, 0, 15, 0, 0 } }), update, 1e-12);

        layer.Merge();
        using var kron = torch.kron(torch.eye(2, dtype: ScalarType.Float64), torch.tensor(new double[,] { { 1, 1, 1 }, { 0, 0, 0 }, { 0, 0, 0 } }));
        using var mergedWeight = residual + kron;
        TensorAssert.Close(mergedWeight, layer.Weight, 1e-12);
        using (torch.no_grad())
        {
            using var merged = layer.forward(x);
            TensorAssert.Close(y, merged, 1e-12);
        }

        layer.Unmerge();
        TensorAssert.Close(residual, layer.Weight, 1e-12);
    }

    [Fact]
    public void TheBaseProductPathAndTheVecTrickGiveTheDenseUpdatesOutputAndGradients()
    {
        using var w = torch.randn(new long[] { 12, 8 }, dtype: ScalarType.Float64, generator: new Generator(11));
        using var layer = Layer(w);
        layer.WithAdapter("default", new SoKAOptions(Rank: 3));
        var a = Adapter(layer);
        Assert.Equal((3, 2, 4, 4), (a.M, a.N, a.P, a.Q));
        using var x = torch.randn(new long[] { 5, 8 }, dtype: ScalarType.Float64, generator: new Generator(12));
        using var g = torch.randn(new long[] { 5, 12 }, dtype: ScalarType.Float64, generator: new Generator(13));

        // At init the layer is the original: residual + top-3 components.
        using (torch.no_grad())
        {
            using var atInit = layer.forward(x);
            TensorAssert.Close(x.matmul(w.t()), atInit, 1e-10);
        }

        using var y = layer.forward(x);
        using var loss = (y * g).sum();
        loss.backward();
        using var gw1 = a.W1.grad!.clone();
        using var gw2 = a.W2.grad!.clone();
        a.W1.grad!.zero_();
        a.W2.grad!.zero_();

        using var delta = a.DeltaWeight();
        using var full = layer.Weight + delta;
        using var dense = x.matmul(full.t());
        TensorAssert.Close(dense.detach(), y.detach(), 1e-10);
        using var denseLoss = (dense * g).sum();
        denseLoss.backward();
        TensorAssert.Close(a.W1.grad!, gw1, 1e-10);
        TensorAssert.Close(a.W2.grad!, gw2, 1e-10);

        // The vec trick (AddSeparately, for a forward that cannot share the base product) gives the same output and gradients.
        a.W1.grad!.zero_();
        a.W2.grad!.zero_();
        using var viaVec = x.matmul(layer.Weight.t()).detach().clone();
        a.AddTo(x, viaVec);
        TensorAssert.Close(dense.detach(), viaVec.detach(), 1e-10);
        using var vecLoss = (viaVec * g).sum();
        vecLoss.backward();
        TensorAssert.Close(a.W1.grad!, gw1, 1e-10);
        TensorAssert.Close(a.W2.grad!, gw2, 1e-10);
        Assert.Equal(SoKARules.ParameterCount(8, 12, 3, -1), a.TrainableParameterCount);
        Assert.Equal(3 * (6 + 16), a.TrainableParameterCount);
    }

    [Fact]
    public void EnergyAndElbowRules()
    {
        // σ = [10, 9, 1, 0.5, 0]: normalised y = [1, .9, .1, .05, 0] at x = [0, .25, .5, .75, 1]; 1 − x − y = [0, −.15, .4, .2, 0] ⇒ elbow 3.
        var sigma = new[] { 10.0, 9, 1, 0.5, 0 };
        Assert.Equal(3, SoKARules.ElbowRank(sigma));
        // Σσ² = 182.25: 90% = 164.025 ⇒ energy rank 2 (181); 99.9% = 182.07 ⇒ 4 (182 < 182.07); the elbow caps it at 3.
        Assert.Equal(2, SoKARules.AutomaticRank(sigma, 0.9));
        Assert.Equal(3, SoKARules.AutomaticRank(sigma, 0.999));
        Assert.Equal(2, SoKARules.ElbowRank(new[] { 5.0, 0, 0, 0 }));
        Assert.Equal(1, SoKARules.AutomaticRank(new[] { 5.0, 0, 0, 0 }, 0.9));
        Assert.Equal(3, SoKARules.ElbowRank(new[] { 2.0, 2, 2 }));                 // flat: no elbow, keep all
        Assert.Equal((3, 2, 4, 4), SoKARules.Shapes(8, 12, -1));
        Assert.Equal(6, SoKARules.MaxRank(8, 12, -1));
        Assert.Equal((2, 2, 4, 4), SoKARules.Shapes(8, 8, 2));
    }

    [Theory]
    [InlineData(7, -1, 0.9, "larger than the 6 Kronecker components", "at most 6")]
    [InlineData(-1, -1, 0.9, "rank must be positive, or 0", "q_proj")]
    [InlineData(0, 5, 0.9, "Factor 5 must be -1 (automatic) or a positive number dividing", "out_features 12")]
    [InlineData(0, -1, 2.0, "EnergyThreshold must be in (0, 1], got 2", "q_proj")]
    [InlineData(2, -1, 0.5, "applies only with rank 0", "Remove one of them")]
    public void BadArgumentsAreRefusedNamingTheMemberAndTheFix(int rank, int factor, double threshold, string expected, string alsoExpected)
    {
        using var layer = Layer(torch.randn(new long[] { 12, 8 }, dtype: ScalarType.Float64, generator: new Generator(1)));
        using var before = layer.Weight.detach().clone();
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new SoKAOptions(rank, factor, threshold)));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains(alsoExpected, ex.Message, StringComparison.Ordinal);
        Assert.Contains("q_proj", ex.Message, StringComparison.Ordinal);
        TensorAssert.Equal(before, layer.Weight);
    }
}
