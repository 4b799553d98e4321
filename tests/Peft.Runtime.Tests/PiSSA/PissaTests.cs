using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.PiSSA;

/// <summary>
/// PiSSA and OLoRA (catalogue 2.3) against hand-computed values and their formulas: the catalogue's W = diag(3, 1) example,
/// an OLoRA example by hand, the output at init equal to the original layer's, gradients, merge and unmerge on the residual,
/// the randomized SVD against the full one, and the refused argument combinations.
/// </summary>
public class PissaTests
{
    private static AdaptedLinear Layer(Tensor weight)
    {
        var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: false, dtype: weight.dtype);
        using (torch.no_grad()) linear.weight!.copy_(weight);
        var layer = AdaptedLinear.Wrap(linear, "q_proj");
        layer.Weight.requires_grad = false;
        return layer;
    }

    private static LoRAAdapter Adapter(AdaptedLinear layer) => (LoRAAdapter)layer.GetAdapter("default");

    [Fact]
    public void CatalogueExamplePiSSAOfDiag31WithRank1()
    {
        // W = diag(3, 1), r = 1, α = 1 (s = 1): A = [√3, 0], B = [√3, 0]ᵀ (up to a common sign), W_res = diag(0, 1).
        using var w = torch.tensor(new double[,] { { 3, 0 }, { 0, 1 } });
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 1, Alpha: 1, Init: LoRAInit.PiSSA));
        var lora = Adapter(layer);
        double sign = Math.Sign(lora.A[0, 0].item<double>());
        using var expectedA = torch.tensor(new[,] { { sign * Math.Sqrt(3), 0 } });
        using var expectedB = torch.tensor(new[,] { { sign * Math.Sqrt(3) }, { 0.0 } });
        TensorAssert.Close(expectedA, lora.A, 1e-12);
        TensorAssert.Close(expectedB, lora.B, 1e-12);
        using var residual = torch.tensor(new double[,] { { 0, 0 }, { 0, 1 } });
        TensorAssert.Close(residual, layer.Weight, 1e-12);
    }

    [Fact]
    public void PiSSADividesTheSingularValuesByTheScaling()
    {
        // α = 4, r = 1 ⇒ s = 4: A = [√(3/4), 0], so s·B A = diag(3, 0) still.
        using var w = torch.tensor(new double[,] { { 3, 0 }, { 0, 1 } });
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 1, Alpha: 4, Init: LoRAInit.PiSSA));
        Assert.Equal(Math.Sqrt(0.75), Math.Abs(Adapter(layer).A[0, 0].item<double>()), 12);
        using var delta = Adapter(layer).DeltaWeight();
        using var expected = torch.tensor(new double[,] { { 3, 0 }, { 0, 0 } });
        TensorAssert.Close(expected, delta, 1e-12);
    }

    [Fact]
    public void OLoRAByHand()
    {
        // W = [[1, 2], [3, 4]], r = 1, α = 2 (s = 2): q₁ = [1, 3]/√10, B = q₁, A = q₁ᵀW = [√10, 14/√10] (common sign free);
        // B A = q₁q₁ᵀW = [[1, 1.4], [3, 4.2]]; W_res = W − 2·B A = [[−1, −0.8], [−3, −4.4]].
        using var w = torch.tensor(new double[,] { { 1, 2 }, { 3, 4 } });
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 1, Alpha: 2, Init: LoRAInit.OLoRA));
        var lora = Adapter(layer);
        double sign = Math.Sign(lora.B[0, 0].item<double>());
        using var expectedB = torch.tensor(new[,] { { sign / Math.Sqrt(10) }, { sign * 3 / Math.Sqrt(10) } });
        using var expectedA = torch.tensor(new[,] { { sign * Math.Sqrt(10), sign * 14 / Math.Sqrt(10) } });
        TensorAssert.Close(expectedB, lora.B, 1e-12);
        TensorAssert.Close(expectedA, lora.A, 1e-12);
        using var residual = torch.tensor(new[,] { { -1.0, -0.8 }, { -3.0, -4.4 } });
        TensorAssert.Close(residual, layer.Weight, 1e-12);
        using var delta = lora.DeltaWeight();
        using var sum = layer.Weight + delta;
        TensorAssert.Close(w, sum, 1e-12);      // W_res + s·B A == W
    }

    [Theory]
    [InlineData(LoRAInit.PiSSA, 0)]
    [InlineData(LoRAInit.PiSSA, 2)]
    [InlineData(LoRAInit.OLoRA, 0)]
    public void StartsAtTheOriginalLayerMergesOnTheResidualAndGradientsFollowTheFormula(LoRAInit init, int iterations)
    {
        torch.manual_seed(11);
        using var w = torch.randn(5, 7);
        using var layer = Layer(w);
        using var x = torch.randn(3, 7);
        using var original = F.linear(x, w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 2, Alpha: 4, Init: init, PissaIterations: iterations));
        var lora = Adapter(layer);
        using (var y0 = layer.forward(x)) TensorAssert.Close(original, y0, 1e-5);
        using var residual = layer.Weight.clone();
        using (var delta = lora.DeltaWeight())
        using (var sum = residual + delta) TensorAssert.Close(w, sum, 1e-5);

        // Gradients: y = x W_resᵀ + s (x Aᵀ) Bᵀ ⇒ dL/dB = s gᵀ(x Aᵀ), dL/dA = s (g B)ᵀ x, with g = dL/dy.
        using var g = torch.randn(3, 5);
        using (var y = layer.forward(x))
        using (var loss = (y * g).sum()) loss.backward();
        Assert.Null(layer.Weight.grad);
        using var xa = x.matmul(lora.A.detach().t());
        using var gradB = g.t().matmul(xa).mul(lora.Scaling);
        using var gb = g.matmul(lora.B.detach());
        using var gradA = gb.t().matmul(x).mul(lora.Scaling);
        TensorAssert.Close(gradB, lora.B.grad!, 1e-5);
        TensorAssert.Close(gradA, lora.A.grad!, 1e-5);

        // Some training, then merge == unmerged, unmerge restores the residual.
        using (torch.no_grad())
        {
            lora.A.add_(torch.randn_like(lora.A).mul_(0.1));
            lora.B.add_(torch.randn_like(lora.B).mul_(0.1));
        }

        using var unmerged = layer.forward(x).detach();
        layer.Merge();
        using (var merged = layer.forward(x)) TensorAssert.Close(unmerged, merged, 1e-5);
        layer.Unmerge();
        TensorAssert.Close(residual, layer.Weight, 1e-6);
        layer.AdaptersDisabled = true;
        using (var disabled = layer.forward(x))
        using (var expected = F.linear(x, residual)) TensorAssert.Close(expected, disabled, 1e-6);
    }

    [Fact]
    public void RandomizedSvdMatchesTheFullSvdOnAMatrixWithASpectralGap()
    {
        torch.manual_seed(3);
        var (u, _) = linalg.qr(torch.randn(40, 40, dtype: ScalarType.Float64));
        var (v, _) = linalg.qr(torch.randn(30, 30, dtype: ScalarType.Float64));
        var s = torch.full(30, 0.01, dtype: ScalarType.Float64);
        s[0] = 50; s[1] = 20; s[2] = 10;
        using var a = u.narrow(1, 0, 30).matmul(torch.diag(s)).matmul(v.t());
        var (ur, sr, vr) = RandomizedSvd.Compute(a, 3, iterations: 4);
        using var top = torch.tensor(new double[] { 50, 20, 10 });
        TensorAssert.Close(top, sr, 1e-6);
        using var approx = ur.matmul(torch.diag(sr)).matmul(vr.t());
        using var best = u.narrow(1, 0, 3).matmul(torch.diag(s.narrow(0, 0, 3))).matmul(v.narrow(1, 0, 3).t());
        TensorAssert.Close(best, approx, 1e-6);

        // PiSSA with niter 4 leaves (nearly) the full SVD's residual; the same weight always gives the same factors.
        using var w = a.to(ScalarType.Float32);
        using var full = Layer(w);
        full.WithAdapter("default", new LoRAOptions(Rank: 3, Alpha: 3, Init: LoRAInit.PiSSA));
        using var fast = Layer(w);
        fast.WithAdapter("default", new LoRAOptions(Rank: 3, Alpha: 3, Init: LoRAInit.PiSSA, PissaIterations: 4));
        TensorAssert.Close(full.Weight, fast.Weight, 1e-4);
        using var again = Layer(w);
        again.WithAdapter("default", new LoRAOptions(Rank: 3, Alpha: 3, Init: LoRAInit.PiSSA, PissaIterations: 4));
        TensorAssert.Equal(fast.Weight, again.Weight);
    }

    [Fact]
    public void ArgumentsThatDoNotGoTogetherAreRefusedNamingTheMember()
    {
        using var w = torch.randn(4, 4);
        using var layer = Layer(w);
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("a", new LoRAOptions(Rank: 2, PissaIterations: 2)));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("LoRAInit.PiSSA", ex.Message);
        ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("b", new LoRAOptions(Rank: 2, Init: LoRAInit.PiSSA, PissaIterations: -1)));
        Assert.Contains("PissaIterations", ex.Message);
        ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("c", new DoRAOptions(Rank: 2, Init: LoRAInit.OLoRA)));
        Assert.Contains("[LoRA", ex.Message);
        ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("d", new LoRAOptions(Rank: 5, Init: LoRAInit.PiSSA)));
        Assert.Contains("min(in_features=4, out_features=4)", ex.Message);
        TensorAssert.Equal(w, layer.Weight);
    }
}
