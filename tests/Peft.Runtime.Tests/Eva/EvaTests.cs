using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Eva;

/// <summary>
/// EVA (PEFT's init_lora_weights="eva") against hand-computed PCAs: calibration rows ± a_i e_i (zero mean) have principal
/// directions e_i and explained-variance ratios a_i² / Σ a_j², so A, the redistributed ranks, the alphas (scaled by r'/r) and the
/// whitened rows are known in advance; the stream's convergence, the padding mask, shared inputs and the LoRA math after EVA.
/// </summary>
public class EvaTests
{
    private static LoRAAdapter Adapter(nn.Module model, string path)
        => (LoRAAdapter)model.AdaptedLayers().Single(l => l.Path == path).Layer.GetAdapter(AdapterNames.Default);

    [Fact]
    public void RowsAlongE1WithVariance9AndE2WithVariance1GiveAEqualToE1AndBZero()
    {
        using var model = new EvaOne();
        using var x = EvaData.Axes(3, 1, 0);   // ±3 e1, ±1 e2: Σ x² along e1 = 18, along e2 = 2 ⇒ ratios 0.9, 0.1
        var result = model.InitializeEva(new[] { x }, (batch, _) => model.call(batch).Dispose());

        var lora = Adapter(model, "fc");
        Assert.Equal(1, lora.Rank);
        Assert.Equal(2.0, lora.Options.Alpha);
        using var e1 = torch.tensor(new float[,] { { 1, 0, 0 } });
        TensorAssert.Close(e1, lora.A, 1e-6);                   // the sign is fixed: the largest entry is positive
        Assert.Equal(0.0, lora.B.abs().max().item<float>());
        Assert.Equal(new EvaSettings(new EvaConfig(), 1, 2.0), lora.Options.Eva);
        Assert.Equal(new EvaLayerResult("fc", 1, 1, 2.0, null), result.Layers.Single());
    }

    [Fact]
    public void WhiteningDividesByTheSquareRootOfTheSingularValue()
    {
        using var model = new EvaOne();
        // The stream is one batch, so the PCA has seen it twice when it converges: Σ x² along e1 = 2 · 18 = 36, S₁ = 6 and
        // A = e1 / √6 = 0.408248 e1.
        using var x = EvaData.Axes(3, 1, 0);
        model.InitializeEva(new[] { x }, (batch, _) => model.call(batch).Dispose(), new EvaConfig(Whiten: true));
        using var expected = torch.tensor(new float[,] { { 0.408248f, 0, 0 } });
        TensorAssert.Close(expected, Adapter(model, "fc").A, 1e-5);
    }

    [Fact]
    public void TwoLayersWithDifferentSpectraGetTheRanksTheRatiosDecide()
    {
        // r = 2 on both: budget 4, rho 2 ⇒ at most 4 each. p's ratios 0.97, 0.03, 0, 0; q's 0.4, 0.3, 0.2, 0.1.
        // The 4 largest: 0.97 (p), 0.4, 0.3, 0.2 (q) ⇒ p 1, q 3; alphas 4·1/2 = 2 and 4·3/2 = 6.
        using var model = new EvaTwo();
        using var xp = EvaData.Axes(Math.Sqrt(97), Math.Sqrt(3), 0, 0);
        using var xq = EvaData.Axes(2, Math.Sqrt(3), Math.Sqrt(2), 1);
        var result = model.InitializeEva(new[] { 0 }, (_, _) => model.Feed(xp, xq));

        Assert.Equal(new[] { ("p", 1, 2.0), ("q", 3, 6.0) }, result.Layers.Select(l => (l.Path, l.Rank, l.Alpha)));
        var p = Adapter(model, "p");
        var q = Adapter(model, "q");
        Assert.Equal((1, 2.0, 2.0), (p.Rank, p.Options.Alpha, p.Scaling));
        Assert.Equal((3, 6.0, 2.0), (q.Rank, q.Options.Alpha, q.Scaling));   // alpha / r unchanged
        using var e1 = torch.tensor(new float[,] { { 1, 0, 0, 0 } });
        using var e123 = torch.eye(4).narrow(0, 0, 3);
        TensorAssert.Close(e1, p.A, 1e-5);
        TensorAssert.Close(e123, q.A, 1e-5);
        Assert.Equal(new[] { 3L, 3 }, q.B.shape);
        Assert.Equal(0.0, q.B.abs().max().item<float>());
    }

    [Fact]
    public void WithoutAdjustingTheScalingFactorsAlphaStays()
    {
        using var model = new EvaTwo();
        using var xp = EvaData.Axes(Math.Sqrt(97), Math.Sqrt(3), 0, 0);
        using var xq = EvaData.Axes(2, Math.Sqrt(3), Math.Sqrt(2), 1);
        var result = model.InitializeEva(new[] { 0 }, (_, _) => model.Feed(xp, xq), new EvaConfig(AdjustScalingFactors: false));
        Assert.Equal(new[] { ("p", 1, 4.0), ("q", 3, 4.0) }, result.Layers.Select(l => (l.Path, l.Rank, l.Alpha)));
        Assert.Equal(4.0, Adapter(model, "p").Scaling);
    }

    [Fact]
    public void RhoOneKeepsEveryLayerAtItsRank()
    {
        using var model = new EvaTwo();
        using var xp = EvaData.Axes(Math.Sqrt(97), Math.Sqrt(3), 0, 0);
        using var xq = EvaData.Axes(2, Math.Sqrt(3), Math.Sqrt(2), 1);
        var result = model.InitializeEva(new[] { 0 }, (_, _) => model.Feed(xp, xq), new EvaConfig(Rho: 1));
        Assert.Equal(new[] { 2, 2 }, result.Layers.Select(l => l.Rank));
    }

    [Fact]
    public void AStationaryStreamStopsAfterTwoPcaSteps()
    {
        // One pass finds equal inputs, the first PCA step has nothing to compare with, the second gives cosine similarity 1 ≥ tau:
        // 3 forward passes out of a stream of 50 batches.
        using var model = new EvaOne();
        using var x = EvaData.Axes(3, 1, 0);
        int calls = 0;
        var result = model.InitializeEva(Enumerable.Repeat(x, 50).ToList(), (batch, _) => { calls++; model.call(batch).Dispose(); });
        Assert.Equal(3, calls);
        Assert.Equal(3, result.ForwardPasses);
    }

    [Fact]
    public void AStreamThatNeverConvergesFailsNamingTheLayer()
    {
        using var model = new EvaOne();
        // Fresh random rows every batch: the estimate keeps moving, so with tau = 1 no step repeats the previous one exactly.
        var generator = new Generator(3);
        var batches = Enumerable.Range(0, 8).Select(_ => torch.randn(new long[] { 8, 3 }, generator: generator)).ToList();
        var ex = Assert.Throws<PeftConfigurationException>(() =>
            model.InitializeEva(batches, (batch, _) => model.call(batch).Dispose(), new EvaConfig(Tau: 1.0), maxForwardPasses: 6));
        Assert.Contains("'fc'", ex.Message);
        Assert.Contains("maxForwardPasses", ex.Message);
    }

    [Fact]
    public void PaddingRowsAreLeftOutThroughTheRowMask()
    {
        // Two padding rows ±10 e3 would dominate (Σ x² = 200 along e3); masked out, A is e1 again.
        using var model = new EvaOne();
        using var x = torch.cat(new[] { EvaData.Axes(3, 1, 0), torch.tensor(new float[,] { { 0, 0, 10 }, { 0, 0, -10 } }) }, 0).unsqueeze(0);
        using var mask = torch.tensor(new[,] { { true, true, true, true, false, false } });
        model.InitializeEva(new[] { x }, (batch, capture) =>
        {
            capture.RowMask = mask;
            model.call(batch).Dispose();
        });
        using var e1 = torch.tensor(new float[,] { { 1, 0, 0 } });
        TensorAssert.Close(e1, Adapter(model, "fc").A, 1e-6);

        using var unmasked = new EvaOne();
        unmasked.InitializeEva(new[] { x }, (batch, _) => unmasked.call(batch).Dispose());
        using var e3 = torch.tensor(new float[,] { { 0, 0, 1 } });
        TensorAssert.Close(e3, Adapter(unmasked, "fc").A, 1e-6);
    }

    [Fact]
    public void TheLabelMaskDropsIgnoredLabelsAsPeftDoes()
    {
        using var attention = torch.tensor(new long[,] { { 1, 1, 0 } });
        using var labels = torch.tensor(new long[,] { { 5, -100, 7 } });
        using var both = new EvaConfig().RowMask(attention, labels)!;
        Assert.Equal(new[] { true, false, false }, both.data<bool>().ToArray());
        using var attentionOnly = new EvaConfig(UseLabelMask: false).RowMask(attention, labels)!;
        Assert.Equal(new[] { true, true, false }, attentionOnly.data<bool>().ToArray());
    }

    [Fact]
    public void LayersWithEqualInputsShareOnePca()
    {
        // Both see ±3 e1, ±1 e2: one PCA; ratios 0.9, 0.1 offered twice, budget 2 ⇒ 1 each (ties go to the earlier layer).
        using var model = new EvaPair();
        using var x = EvaData.Axes(3, 1, 0);
        var result = model.InitializeEva(new[] { 0 }, (_, _) => model.Feed(x, x));
        Assert.Equal(new[] { ("p", 1, (string?)null), ("q", 1, "p") }, result.Layers.Select(l => (l.Path, l.Rank, l.SharesInputsWith)));
        TensorAssert.Equal(Adapter(model, "p").A, Adapter(model, "q").A);
    }

    [Fact]
    public void ALayerGivenRankZeroLosesItsAdapter()
    {
        // r = 1, budget 2, rho 2: p's ratios 0.55, 0.45 beat q's 0.4, 0.35 ⇒ p 2 (alpha 2·2/1 = 4), q 0.
        using var model = new EvaPair();
        using var xp = EvaData.Axes(Math.Sqrt(11), 3, 0);
        using var xq = EvaData.Axes(Math.Sqrt(8), Math.Sqrt(7), Math.Sqrt(5));
        var result = model.InitializeEva(new[] { 0 }, (_, _) => model.Feed(xp, xq));
        Assert.Equal(new[] { ("p", 2, 4.0), ("q", 0, 2.0) }, result.Layers.Select(l => (l.Path, l.Rank, l.Alpha)));
        Assert.False(model.AdaptedLayers().Single(l => l.Path == "q").Layer.HasAdapter(AdapterNames.Default));
        Assert.Equal(2, Adapter(model, "p").Rank);
        Assert.Equal(2 * 3 + 2 * 2, model.TrainableParameters().Sum(t => t.numel()));
    }

    [Fact]
    public void AfterEvaTheLayerIsLoRAOnTheComponentsByHand()
    {
        // A = e1, B = 0, s = 2: the output is the base's; dL/dB (L = Σ y) is s · (A x) = 2 · 1 per output row, dL/dA = 0.
        using var model = new EvaOne();
        using var calib = EvaData.Axes(3, 1, 0);
        model.InitializeEva(new[] { calib }, (batch, _) => model.call(batch).Dispose());
        var layer = (AdaptedLinear)model.AdaptedLayers().Single().Layer;
        var lora = Adapter(model, "fc");
        using var x = torch.tensor(new float[,] { { 1, 2, 3 } });
        using var baseOut = torch.nn.functional.linear(x, layer.Weight, layer.Bias);
        using (var y = model.call(x))
        {
            TensorAssert.Close(baseOut, y, 1e-6);
            y.sum().backward();
        }

        using var dB = torch.tensor(new float[,] { { 2 }, { 2 } });
        TensorAssert.Close(dB, lora.B.grad!, 1e-6);
        Assert.Equal(0.0, lora.A.grad!.abs().max().item<float>());

        using (no_grad()) lora.B.copy_(torch.tensor(new float[,] { { 1 }, { -1 } }));
        using var expected = baseOut + torch.tensor(new float[,] { { 2, -2 } });   // s · B (A x) = 2 · [1, −1] · 1
        using var unmerged = model.call(x);
        TensorAssert.Close(expected, unmerged, 1e-5);
        using var weight = layer.Weight.clone();
        model.Merge();
        using (var merged = model.call(x)) TensorAssert.Close(unmerged, merged, 1e-5);
        model.Unmerge();
        TensorAssert.Close(weight, layer.Weight, 1e-6);
    }

    [Fact]
    public void BadInputIsRefusedNamingTheFix()
    {
        using var model = new EvaOne();
        using var x = EvaData.Axes(3, 1, 0);
        Assert.Throws<ArgumentException>(() => model.InitializeEva(Array.Empty<Tensor>(), (batch, _) => model.call(batch).Dispose()));
        var rho = Assert.Throws<PeftConfigurationException>(() => model.InitializeEva(new[] { x }, (batch, _) => model.call(batch).Dispose(), new EvaConfig(Rho: 0.5)));
        Assert.Contains("Rho", rho.Message);
        var wide = Assert.Throws<PeftConfigurationException>(() => model.InitializeEva(new[] { x }, (batch, _) => model.call(batch).Dispose(), new EvaConfig(Rho: 4)));
        Assert.Contains("'fc'", wide.Message);
        Assert.Contains("Lower EvaConfig.Rho", wide.Message);
        var none = Assert.Throws<PeftConfigurationException>(() => model.InitializeEva(new[] { x }, (batch, _) => model.call(batch).Dispose(), adapterName: "other"));
        Assert.Contains("Init = LoRAInit.EVA", none.Message);
        var unreached = Assert.Throws<PeftConfigurationException>(() => model.InitializeEva(new[] { x }, (_, _) => { }));
        Assert.Contains("did not reach", unreached.Message);
        var dora = Assert.Throws<PeftConfigurationException>(() => new DoRAOptions(Rank: 2, Init: LoRAInit.EVA).Validate("default", new PeftLayerInfo(PeftLayerKind.Linear, 4, 4, true, torch.CPU, ScalarType.Float32, "down")));
        Assert.Contains("[LoRA] only", dora.Message);
    }
}
