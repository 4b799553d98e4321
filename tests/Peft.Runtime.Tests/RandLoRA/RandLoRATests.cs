using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.RandLoRA;

/// <summary>RandLoRA against its formula (PEFT's randlora/layer.py): <c>ΔW = s · B̂ Â</c> (transposed when in &gt; out) with
/// <c>Â[i·n + j] = λ[i, j] · A[i, 0] ⊙ γ[j]</c> and <c>B̂[:, j·r + i] = B[:, j, i]</c>; hand-computed examples, both forward
/// paths against the dense update built entry by entry, gradients, full rank, merge, and the seeded bases.</summary>
public class RandLoRATests
{
    /// <summary>Adapted linear layers (8 → 6, 6 → 10) with RandLoRA "default" on both, bound as a model (bases sized
    /// min 8, max 10).</summary>
    private static (nn.Module<Tensor, Tensor> Model, RandLoRAAdapter[] Adapters) TwoLayers(RandLoRAOptions options, ScalarType dtype = ScalarType.Float32)
    {
        var first = AdaptedLinear.Wrap(nn.Linear(8, 6, dtype: dtype), "fc1").WithRandLoRA("default", options);
        var second = AdaptedLinear.Wrap(nn.Linear(6, 10, dtype: dtype), "fc2").WithRandLoRA("default", options);
        var model = nn.Sequential(("fc1", first), ("fc2", second));
        model.BindSharedTensors();
        return (model, new[] { (RandLoRAAdapter)first.GetAdapter("default"), (RandLoRAAdapter)second.GetAdapter("default") });
    }

    private static void Set(Tensor tensor, float[] values)
    {
        using var noGrad = torch.no_grad();
        using var t = torch.tensor(values, tensor.shape);
        tensor.copy_(t);
    }

    private static SharedAdapterTensors Bases(float[] a, long[] aShape, float[] b, long[] bShape)
        => new(new[] { ("randlora_A", torch.tensor(a, aShape)), ("randlora_B", torch.tensor(b, bShape)) }, persistent: true);

    /// <summary>ΔW built entry by entry from the catalogue's definition (differentiable in λ and γ): the reference the
    /// adapter's reshapes must reproduce, flatten orders included.</summary>
    private static Tensor DenseByEntries(RandLoRAAdapter a)
    {
        long r = a.Options.Rank, n = a.BaseCount, min = Math.Min(a.InFeatures, a.OutFeatures), max = Math.Max(a.InFeatures, a.OutFeatures);
        var set = a.SharedTensors!;
        var rows = new List<Tensor>();
        for (long i = 0; i < r; i++)
        {
            for (long j = 0; j < n; j++) rows.Add(a.Lambda[i, j] * set["randlora_A"][i, 0].narrow(0, 0, min) * a.Gamma[j]);  // row i·n + j
        }

        var aHat = torch.stack(rows);                                                     // [r·n, min]
        var cols = new List<Tensor>();
        for (long j = 0; j < n; j++)
        {
            for (long i = 0; i < r; i++) cols.Add(set["randlora_B"].narrow(0, 0, max)[.., j, i]);   // column j·r + i
        }

        var bHat = torch.stack(cols, 1);                                                  // [max, n·r]
        var product = bHat.matmul(aHat) * a.Scaling;
        return a.InFeatures <= a.OutFeatures ? product : product.t();
    }

    [Fact]
    public void TheHandComputedExamplesGiveTheirUpdatesInBothOrientations()
    {
        // in = out = 2, r = 1 (n = 2), alpha = 1: A = [[[1, 2]]], B[:, 0, 0] = [1, 0], B[:, 1, 0] = [0, 1] ⇒ B̂ = I;
        // λ = [[1, 2]], γ = [[1, 1], [1, 0]] ⇒ Â = [[1, 2], [2, 0]] ⇒ ΔW = [[1, 2], [2, 0]].
        var square = AdaptedLinear.Wrap(nn.Linear(2, 2), "q_proj").WithRandLoRA("default", new RandLoRAOptions(Rank: 1, Alpha: 1));
        var a = (RandLoRAAdapter)square.GetAdapter("default");
        a.Bind(Bases(new float[] { 1, 2 }, new long[] { 1, 1, 2 }, new float[] { 1, 0, 0, 1 }, new long[] { 2, 2, 1 }));
        Set(square.Weight, new float[] { 1, 0, 0, 1 });
        Set(square.Bias!, new float[] { 0, 0 });
        Set(a.Lambda, new float[] { 1, 2 });
        Set(a.Gamma, new float[] { 1, 1, 1, 0 });
        using (var delta = a.DeltaWeight()) TensorAssert.Equal(torch.tensor(new float[] { 1, 2, 2, 0 }, new long[] { 2, 2 }), delta);

        // x = [1, 1]: W x = [1, 1], ΔW x = [3, 2] ⇒ y = [4, 3].
        using var x = torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 });
        using (var y = square.call(x)) TensorAssert.Equal(torch.tensor(new float[] { 4, 3 }, new long[] { 1, 2 }), y);

        // in = 3 > out = 2, r = 1 (n = 2), alpha = 2 (s = 2): A = [[[1, 1]]], B[:, 0, 0] = [1, 0, 1], B[:, 1, 0] = [0, 1, 0];
        // λ = [[1, 1]], γ = I ⇒ Â = I ⇒ B̂ Â = [[1, 0], [0, 1], [1, 0]] ⇒ ΔW = 2 (B̂ Â)ᵀ = [[2, 0, 2], [0, 2, 0]].
        var wide = AdaptedLinear.Wrap(nn.Linear(3, 2), "o_proj").WithRandLoRA("default", new RandLoRAOptions(Rank: 1, Alpha: 2));
        var w = (RandLoRAAdapter)wide.GetAdapter("default");
        w.Bind(Bases(new float[] { 1, 1 }, new long[] { 1, 1, 2 }, new float[] { 1, 0, 0, 1, 1, 0 }, new long[] { 3, 2, 1 }));
        Set(w.Lambda, new float[] { 1, 1 });
        Set(w.Gamma, new float[] { 1, 0, 0, 1 });
        using (var delta = w.DeltaWeight()) TensorAssert.Equal(torch.tensor(new float[] { 2, 0, 2, 0, 2, 0 }, new long[] { 2, 3 }), delta);

        // λ = 0 ⇒ no update.
        Set(a.Lambda, new float[] { 0, 0 });
        using (var delta = a.DeltaWeight()) TensorAssert.Equal(torch.zeros(2, 2), delta);
        using (var y = square.call(x)) TensorAssert.Equal(torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 }), y);
    }

    [Fact]
    public void ANewAdapterIsPeftsInitStartsAtZeroAndCountsRNPlusNMinParameters()
    {
        var (_, adapters) = TwoLayers(new RandLoRAOptions(Rank: 4, Alpha: 80));
        var a = adapters[1];                       // 6 → 10: min 6, n = ⌈6 / 4⌉ = 2
        Assert.Equal(2, a.BaseCount);
        Assert.Equal(new[] { "randlora_lambda", "randlora_gamma" }, a.PeftTensors().Select(t => t.PeftName));
        TensorAssert.Equal(torch.zeros(4, 2), a.Lambda);
        TensorAssert.Equal(torch.full(2, 6, 1f / 6), a.Gamma);
        Assert.Equal((4 * 2) + (2 * 6), a.TrainableParameterCount);
        Assert.Equal(RandLoRARules.ParameterCount(6, 10, 4), a.TrainableParameterCount);
        Assert.Equal(20.0, a.Scaling);
        using (var delta = a.DeltaWeight()) TensorAssert.Equal(torch.zeros(10, 6), delta);
    }

    [Fact]
    public void With8x8AndR2TheUpdateIsFullRank()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 8, dtype: ScalarType.Float64), "fc").WithRandLoRA("default", new RandLoRAOptions(Rank: 2, Alpha: 40));
        var model = nn.Sequential(("fc", layer));
        model.BindSharedTensors();
        var a = (RandLoRAAdapter)layer.GetAdapter("default");
        Assert.Equal(4, a.BaseCount);
        foreach (var (_, p) in a.PeftTensors()) TensorAssert.Randomize(p, 0.5);
        using var delta = a.DeltaWeight();
        using var rank = torch.linalg.matrix_rank(delta);
        Assert.Equal(8, rank.item<long>());
    }

    [Theory]
    [InlineData(2)]    // fewer rows than max(in, out): the two products through the r·n-wide middle
    [InlineData(12)]   // as many rows as max(in, out) or more: ΔW once
    public void BothForwardPathsEqualXTimesTheEntryByEntryUpdateIn2DAnd3D(int rows)
    {
        var (_, adapters) = TwoLayers(new RandLoRAOptions(Rank: 3, Alpha: 7), ScalarType.Float64);
        foreach (var a in adapters) foreach (var (_, p) in a.PeftTensors()) TensorAssert.Randomize(p, 0.5);
        foreach (var a in adapters)
        {
            using var dense = DenseByEntries(a);
            using (var delta = a.DeltaWeight()) TensorAssert.Close(dense, delta, 1e-12);
            using var x = torch.randn(new long[] { rows, 2, a.InFeatures }, dtype: ScalarType.Float64, generator: new Generator(3));
            using var output = torch.zeros(rows, 2, a.OutFeatures, dtype: ScalarType.Float64);
            using (torch.no_grad()) a.AddTo(x, output);
            using var expected = x.matmul(dense.t());
            TensorAssert.Close(expected, output, 1e-12);
        }
    }

    [Theory]
    [InlineData(3)]
    [InlineData(16)]
    public void OnlyLambdaAndGammaTrainAndTheirGradientsAreTheEntryByEntryForms(int rows)
    {
        var (model, adapters) = TwoLayers(new RandLoRAOptions(Rank: 3, Alpha: 7), ScalarType.Float64);
        foreach (var a in adapters) foreach (var (_, p) in a.PeftTensors()) TensorAssert.Randomize(p, 0.5);
        var trainable = model.TrainableParameters().ToList();
        var scales = adapters.SelectMany(a => new[] { a.Lambda, a.Gamma }).ToList();
        Assert.Equal(scales.Count, trainable.Count);
        Assert.All(trainable, p => Assert.Contains(p, scales, ReferenceEqualityComparer.Instance));
        var shared = adapters[0].SharedTensors!;
        Assert.Same(shared, adapters[1].SharedTensors);
        Assert.All(shared.Tensors, t => Assert.False(t.Tensor.requires_grad));

        foreach (var (a, layer) in adapters.Zip(model.named_children().Select(c => (AdaptedLinear)c.module)))
        {
            using var x = torch.randn(new long[] { rows, a.InFeatures }, dtype: ScalarType.Float64, generator: new Generator(9));
            using (var loss = layer.call(x).pow(2).sum()) loss.backward();
            using var gl = a.Lambda.grad!.clone();
            using var gg = a.Gamma.grad!.clone();
            a.Lambda.grad!.zero_();
            a.Gamma.grad!.zero_();
            using (var baseOut = torch.nn.functional.linear(x, layer.Weight, layer.Bias))
            using (var dense = DenseByEntries(a))
            using (var loss = (baseOut + x.matmul(dense.t())).pow(2).sum())
            {
                loss.backward();
            }

            TensorAssert.Close(a.Lambda.grad!, gl, 1e-10);
            TensorAssert.Close(a.Gamma.grad!, gg, 1e-10);
            Assert.Null(layer.Weight.grad);
        }

        Assert.All(shared.Tensors, t => Assert.True(t.Tensor.grad is null));
    }

    [Fact]
    public void MergeEqualsTheUnmergedForwardAndUnmergeRestoresTheBase()
    {
        // Seeded values of a trained size (ΔW entries of order 0.1): the float32 merge then stays within the 1e-5 the
        // other methods meet, and the test is the same on every run.
        var (model, adapters) = TwoLayers(new RandLoRAOptions(Rank: 4, Alpha: 8));
        using (var generator = new Generator(21))
        using (torch.no_grad())
        {
            foreach (var a in adapters) foreach (var (_, p) in a.PeftTensors()) p.copy_(torch.randn(p.shape, generator: generator) * 0.2);
        }
        var layers = model.named_children().Select(c => (AdaptedLinear)c.module).ToList();
        var originals = layers.Select(l => l.Weight.detach().clone()).ToList();
        using var x = torch.randn(new long[] { 4, 8 }, generator: new Generator(2));
        using var unmerged = model.call(x);
        model.Merge();
        for (int k = 0; k < 2; k++)
        {
            using var delta = adapters[k].DeltaWeight();
            using var expected = originals[k] + delta;
            TensorAssert.Close(expected, layers[k].Weight, 1e-6);
        }

        using (var merged = model.call(x)) TensorAssert.Close(unmerged, merged, 1e-5);
        model.Unmerge();
        for (int k = 0; k < 2; k++) TensorAssert.Close(originals[k], layers[k].Weight, 1e-6);
    }

    [Fact]
    public void TheBasesAreSizedByTheLargestLayerAndSharedByEveryLayer()
    {
        var (_, adapters) = TwoLayers(new RandLoRAOptions(Rank: 3, ProjectionPrngKey: 5));
        var set = adapters[0].SharedTensors!;
        Assert.Same(set, adapters[1].SharedTensors);
        Assert.Equal(new long[] { 3, 1, 8 }, set["randlora_A"].shape);     // min(in_max 8, out_max 10) = 8
        Assert.Equal(new long[] { 10, 3, 3 }, set["randlora_B"].shape);    // max 10, n = ⌈8 / 3⌉ = 3
        var (a, b) = RandLoRAMethod.GenerateBases(3, 8, 10, 5);
        using (a)
        using (b)
        {
            Assert.Equal(ScalarType.Float16, a.dtype);
            using var a32 = a.to(ScalarType.Float32);
            using var b32 = b.to(ScalarType.Float32);
            TensorAssert.Equal(a32, set["randlora_A"]);
            TensorAssert.Equal(b32, set["randlora_B"]);
        }

        var late = AdaptedLinear.Wrap(nn.Linear(12, 4), "late").WithRandLoRA("default", new RandLoRAOptions(Rank: 3, ProjectionPrngKey: 5));
        var lateAdapter = (RandLoRAAdapter)late.GetAdapter("default");
        Assert.Equal("randlora_B has 10 rows, the layer needs 12 (max of in and out)", lateAdapter.Misfit(set));
    }

    /// <summary>
    /// The bases equal PyTorch's own draws, so a PEFT file saved with <c>save_projection: false</c> regenerates the same
    /// tensors here. Goldens from Debian's PyTorch 1.13 (<c>/usr/bin/python3</c>, 2026-12-05) with PEFT's generation for
    /// r = 2 and layers up to in 6, out 4 (min 4, max 6, n 2): dense, seed 0: <c>A = torch.empty((2, 1, 4),
    /// dtype=torch.float16).uniform_(-b, b, generator=g)</c> with b = √3 · √(2 / (1 + 5)) / √4, then two
    /// <c>torch.empty((6, 1, 2), dtype=torch.float16)</c> with fan-in 2 concatenated on dimension 1, each divided by its
    /// <c>std()</c>; sparse, seed 1: <c>torch.rand((2, 1, 4))</c>, <c>torch.rand((6, 2, 2))</c>, ±1 beyond 1/6 of either
    /// end, divided by the std; very sparse, seed 2, in = out = 16 (k = √16 = 4): the same with 1/(2·4). First values, flattened.
    /// </summary>
    [Fact]
    public void TheBasesEqualPyTorchsDrawsForTheSameSeedDenseSparseAndVerySparse()
    {
        AssertDraws(RandLoRAMethod.GenerateBases(2, 6, 4, 0, "dense"),
            new[] { -0.74755859375, -1.0224609375, 1.3828125, 0.422119140625, -0.41552734375, -0.57373046875, 1.5546875, 0.78955078125 },
            new[] { 0.01473236083984375, 1.18359375, 0.794921875, -0.7744140625, -1.22265625, 1.2333984375, -1.533203125, -1.3916015625, 1.31640625, -0.69580078125, 0.98193359375, -0.286376953125 });
        AssertDraws(RandLoRAMethod.GenerateBases(2, 6, 4, 1, "sparse"),
            new[] { 0.0, 0.0, 0.0, 0.0, -2.8284270763397217, 0.0, 0.0, 0.0 },
            new[] { 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.7883055210113525, 0.0 });
        AssertDraws(RandLoRAMethod.GenerateBases(2, 16, 16, 2, "very_sparse"),
            new[] { 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.297084093093872, 0.0, -2.297084093093872, 0.0, 0.0, 0.0, 2.297084093093872, 0.0, 0.0 },
            new[] { 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.2118890285491943, 0.0, 0.0 });
    }

    private static void AssertDraws((Tensor A, Tensor B) bases, double[] goldenA, double[] goldenB)
    {
        using var a = bases.A;
        using var b = bases.B;
        using var flatA = a.flatten().to(ScalarType.Float64);
        using var flatB = b.flatten().to(ScalarType.Float64);
        for (int i = 0; i < goldenA.Length; i++) Assert.Equal(goldenA[i], flatA[i].item<double>(), 6);
        for (int i = 0; i < goldenB.Length; i++) Assert.Equal(goldenB[i], flatB[i].item<double>(), 6);
    }
}
