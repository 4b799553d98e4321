using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.VeRA;

/// <summary>VeRA against its formula (PEFT's vera/layer.py): <c>ΔW = diag(λ_b) B diag(λ_d) A</c> with slices of the shared
/// projections; a hand-computed example, the efficient forward against the dense update, gradients, merge, and the seeded
/// projections.</summary>
public class VeRATests
{
    /// <summary>A Sequential of adapted linear layers (8 → 6, 6 → 10) with VeRA "default" on both, bound as a model.</summary>
    private static (nn.Module<Tensor, Tensor> Model, VeRAAdapter[] Adapters) TwoLayers(VeRAOptions options, ScalarType dtype = ScalarType.Float32)
    {
        var first = AdaptedLinear.Wrap(nn.Linear(8, 6, dtype: dtype), "fc1").WithVeRA("default", options);
        var second = AdaptedLinear.Wrap(nn.Linear(6, 10, dtype: dtype), "fc2").WithVeRA("default", options);
        var model = nn.Sequential(("fc1", first), ("fc2", second));
        model.BindSharedTensors();
        return (model, new[] { (VeRAAdapter)first.GetAdapter("default"), (VeRAAdapter)second.GetAdapter("default") });
    }

    private static void Set(Tensor tensor, float[] values)
    {
        using var noGrad = torch.no_grad();
        using var t = torch.tensor(values, tensor.shape);
        tensor.copy_(t);
    }

    /// <summary>The dense update from the parameters and projections, differentiable.</summary>
    private static Tensor Dense(VeRAAdapter a)
    {
        using var sliceA = a.SliceA();
        using var sliceB = a.SliceB();
        return torch.diag(a.LambdaB).matmul(sliceB).matmul(torch.diag(a.LambdaD)).matmul(sliceA);
    }

    [Fact]
    public void TheHandComputedExampleGivesDeltaW20_00AndLambdaBZeroGivesNoUpdate()
    {
        // A = [[1, 0]], B = [[1], [1]], λ_d = [2], λ_b = [1, 0]: diag([1, 0]) · [[2, 0], [2, 0]] = [[2, 0], [0, 0]].
        var layer = AdaptedLinear.Wrap(nn.Linear(2, 2), "q_proj").WithVeRA("default", new VeRAOptions(Rank: 1));
        var a = (VeRAAdapter)layer.GetAdapter("default");
        var set = new SharedAdapterTensors(new[] { ("vera_A", torch.tensor(new float[] { 1, 0 }, new long[] { 1, 2 })), ("vera_B", torch.tensor(new float[] { 1, 1 }, new long[] { 2, 1 })) }, persistent: true);
        a.Bind(set);
        Set(layer.Weight, new float[] { 1, 0, 0, 1 });
        Set(layer.Bias!, new float[] { 1, 0 });
        Set(a.LambdaD, new float[] { 2 });
        Set(a.LambdaB, new float[] { 1, 0 });
        using (var delta = a.DeltaWeight()) TensorAssert.Equal(torch.tensor(new float[] { 2, 0, 0, 0 }, new long[] { 2, 2 }), delta);

        // x = [1, 1]: W x + b = [2, 1], ΔW x = [2, 0] ⇒ y = [4, 1].
        using var x = torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 });
        using (var y = layer.call(x)) TensorAssert.Equal(torch.tensor(new float[] { 4, 1 }, new long[] { 1, 2 }), y);

        Set(a.LambdaB, new float[] { 0, 0 });
        using (var delta = a.DeltaWeight()) TensorAssert.Equal(torch.zeros(2, 2), delta);
        using (var y = layer.call(x)) TensorAssert.Equal(torch.tensor(new float[] { 2, 1 }, new long[] { 1, 2 }), y);
    }

    [Fact]
    public void ANewAdapterIsPeftsInitAndCountsROutParameters()
    {
        var (_, adapters) = TwoLayers(new VeRAOptions(Rank: 4, DInitial: 0.25));
        var a = adapters[1];
        Assert.Equal(new[] { "vera_lambda_b", "vera_lambda_d" }, a.PeftTensors().Select(t => t.PeftName));
        TensorAssert.Equal(torch.zeros(10), a.LambdaB);
        TensorAssert.Equal(torch.full(4, 0.25f), a.LambdaD);
        Assert.Equal(4 + 10, a.TrainableParameterCount);
        Assert.Equal(VeRARules.ParameterCount(10, 4), a.TrainableParameterCount);
        using (var delta = a.DeltaWeight()) TensorAssert.Equal(torch.zeros(10, 6), delta);
    }

    [Fact]
    public void TheEfficientForwardEqualsXTimesDeltaWTransposedIn2DAnd3D()
    {
        var (_, adapters) = TwoLayers(new VeRAOptions(Rank: 5), ScalarType.Float64);
        foreach (var a in adapters) foreach (var (_, p) in a.PeftTensors()) TensorAssert.Randomize(p, 0.5);
        var fc2 = adapters[1];
        using var x = torch.randn(new long[] { 3, 4, 6 }, dtype: ScalarType.Float64, generator: new Generator(3));
        using var output = torch.zeros(3, 4, 10, dtype: ScalarType.Float64);
        using (torch.no_grad()) fc2.AddTo(x, output);
        using var delta = Dense(fc2);
        using var expected = x.matmul(delta.t());
        TensorAssert.Close(expected, output, 1e-12);
        using var flat = torch.zeros(12, 10, dtype: ScalarType.Float64);
        using var x2 = x.reshape(12, 6);
        using (torch.no_grad()) fc2.AddTo(x2, flat);
        TensorAssert.Close(expected.reshape(12, 10), flat, 1e-12);
    }

    [Fact]
    public void OnlyTheLambdasTrainAndTheirGradientsAreTheDenseForms()
    {
        var (model, adapters) = TwoLayers(new VeRAOptions(Rank: 3), ScalarType.Float64);
        foreach (var a in adapters) foreach (var (_, p) in a.PeftTensors()) TensorAssert.Randomize(p, 0.5);
        var trainable = model.TrainableParameters().ToList();
        var lambdas = adapters.SelectMany(a => new[] { a.LambdaB, a.LambdaD }).ToList();
        Assert.Equal(lambdas.Count, trainable.Count);
        Assert.All(trainable, p => Assert.Contains(p, lambdas, ReferenceEqualityComparer.Instance));
        var shared = adapters[0].SharedTensors!;
        Assert.All(shared.Tensors, t => Assert.False(t.Tensor.requires_grad));
        Assert.DoesNotContain(model.parameters(), p => shared.Tensors.Any(t => ReferenceEquals(t.Tensor, p)));

        var fc1 = adapters[0];
        var layer = (AdaptedLinear)model.named_children().First().module;
        using var x = torch.randn(new long[] { 5, 8 }, dtype: ScalarType.Float64, generator: new Generator(9));
        using (var loss = layer.call(x).pow(2).sum()) loss.backward();
        using var gb = fc1.LambdaB.grad!.clone();
        using var gd = fc1.LambdaD.grad!.clone();
        fc1.LambdaB.grad!.zero_();
        fc1.LambdaD.grad!.zero_();
        using (var baseOut = torch.nn.functional.linear(x, layer.Weight, layer.Bias))
        using (var dense = Dense(fc1))
        using (var loss = (baseOut + x.matmul(dense.t())).pow(2).sum())
        {
            loss.backward();
        }
        TensorAssert.Close(fc1.LambdaB.grad!, gb, 1e-10);
        TensorAssert.Close(fc1.LambdaD.grad!, gd, 1e-10);
        Assert.All(shared.Tensors, t => Assert.True(t.Tensor.grad is null));
        Assert.Null(layer.Weight.grad);
    }

    [Fact]
    public void MergeEqualsTheUnmergedForwardAndUnmergeRestoresTheBase()
    {
        var (model, adapters) = TwoLayers(new VeRAOptions(Rank: 4));
        foreach (var a in adapters) foreach (var (_, p) in a.PeftTensors()) TensorAssert.Randomize(p, 0.5);
        var layer = (AdaptedLinear)model.named_children().Last().module;
        using var original = layer.Weight.detach().clone();
        using var x = torch.randn(new long[] { 4, 6 }, generator: new Generator(2));
        using var unmerged = layer.call(x);
        model.Merge();
        using (var delta = adapters[1].DeltaWeight())
        using (var expected = original + delta)
        {
            TensorAssert.Close(expected, layer.Weight, 1e-6);
        }

        using (var merged = layer.call(x)) TensorAssert.Close(unmerged, merged, 1e-5);
        model.Unmerge();
        TensorAssert.Close(original, layer.Weight, 1e-6);
    }

    /// <summary>
    /// The projections equal PyTorch's own draws, so a PEFT file saved with <c>save_projection: false</c> regenerates the
    /// same tensors here. Goldens from Debian's PyTorch 1.13 (<c>/usr/bin/python3</c>, 2026-12-05), PEFT's
    /// <c>_kaiming_init</c>: <c>g = torch.Generator("cpu").manual_seed(0)</c>; <c>A = torch.empty(4, 8).uniform_(-b, b,
    /// generator=g)</c> with <c>b = √3 · √2 / √8</c>, then <c>B = torch.empty(6, 4)</c> likewise with fan-in 4; the first
    /// eight values of each, flattened.
    /// </summary>
    [Fact]
    public void TheProjectionsEqualPyTorchsDrawsForTheSameSeed()
    {
        var (a, b) = VeRAMethod.GenerateProjections(rank: 4, inMax: 8, outMax: 6, seed: 0);
        using (a)
        using (b)
        {
            double[] goldenA = { -0.006483776494860649, 0.46457377076148987, -0.7127779722213745, -0.6373418569564819, -0.3335534632205963, 0.23223108053207397, -0.017158716917037964, 0.6866624355316162 };
            double[] goldenB = { -0.7938547134399414, -0.5637903213500977, -0.8556563854217529, -1.1470483541488647, -0.7149331569671631, 1.0527883768081665, 0.5465036630630493, 0.5936002135276794 };
            using var flatA = a.flatten();
            using var flatB = b.flatten();
            for (int i = 0; i < 8; i++)
            {
                Assert.Equal(goldenA[i], flatA[i].item<float>(), 6);
                Assert.Equal(goldenB[i], flatB[i].item<float>(), 6);
            }
        }
    }

    [Fact]
    public void TheProjectionsArePeftsSeededKaimingDrawsSizedByTheLargestLayerAndShared()
    {
        var (_, adapters) = TwoLayers(new VeRAOptions(Rank: 4, ProjectionPrngKey: 7));
        var set = adapters[0].SharedTensors!;
        Assert.Same(set, adapters[1].SharedTensors);
        Assert.Equal(new long[] { 4, 8 }, set["vera_A"].shape);    // [r, max in]
        Assert.Equal(new long[] { 10, 4 }, set["vera_B"].shape);   // [max out, r]

        // The reference, as PEFT's _init_vera_A_vera_B: one CPU generator, A first, then B, uniform ±√(6 / fan_in).
        using var generator = new Generator(7);
        using var refA = torch.empty(4, 8).uniform_(-Math.Sqrt(6.0 / 8), Math.Sqrt(6.0 / 8), generator);
        using var refB = torch.empty(10, 4).uniform_(-Math.Sqrt(6.0 / 4), Math.Sqrt(6.0 / 4), generator);
        TensorAssert.Equal(refA, set["vera_A"]);
        TensorAssert.Equal(refB, set["vera_B"]);
        using (var slice = adapters[1].SliceA()) TensorAssert.Equal(refA.narrow(1, 0, 6), slice);
        using (var slice = adapters[0].SliceB()) TensorAssert.Equal(refB.narrow(0, 0, 6), slice);

        var (_, again) = TwoLayers(new VeRAOptions(Rank: 4, ProjectionPrngKey: 7));
        TensorAssert.Equal(set["vera_A"], again[0].SharedTensors!["vera_A"]);
        TensorAssert.Equal(set["vera_B"], again[0].SharedTensors!["vera_B"]);
        var (_, other) = TwoLayers(new VeRAOptions(Rank: 4, ProjectionPrngKey: 8));
        TensorAssert.NotClose(set["vera_A"], other[0].SharedTensors!["vera_A"], 1e-3);
    }

    [Fact]
    public void ConvertingTheModelConvertsTheProjectionsOnceForAllLayers()
    {
        var (model, adapters) = TwoLayers(new VeRAOptions(Rank: 4));
        var before = adapters[0].SharedTensors!["vera_A"].detach().clone();
        model.to(ScalarType.Float64);
        Assert.Same(adapters[0].SharedTensors, adapters[1].SharedTensors);
        Assert.Equal(ScalarType.Float64, adapters[0].SharedTensors!["vera_A"].dtype);
        TensorAssert.Equal(before.to(ScalarType.Float64), adapters[0].SharedTensors!["vera_A"]);
        using var x = torch.randn(new long[] { 2, 8 }, dtype: ScalarType.Float64);
        using var y = model.call(x);
        Assert.Equal(ScalarType.Float64, y.dtype);
    }

    [Fact]
    public void AnUnboundAdapterRefusesToRunAndMismatchedLayersAreRefused()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(4, 4), "q_proj").WithVeRA("default", new VeRAOptions(Rank: 2));
        using var x = torch.randn(1, 4);
        var ex = Assert.Throws<InvalidOperationException>(() => layer.call(x));
        Assert.Contains("BindSharedTensors", ex.Message, StringComparison.Ordinal);

        var first = AdaptedLinear.Wrap(nn.Linear(4, 4), "a").WithVeRA("default", new VeRAOptions(Rank: 2));
        var second = AdaptedLinear.Wrap(nn.Linear(4, 4), "b").WithVeRA("default", new VeRAOptions(Rank: 2, ProjectionPrngKey: 1));
        var model = nn.Sequential(("a", first), ("b", second));
        var mixed = Assert.Throws<PeftConfigurationException>(() => model.BindSharedTensors());
        Assert.Contains("ProjectionPrngKey", mixed.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ALayerAddedLaterReusesTheBoundProjectionsOrIsRefusedWhenTheyAreTooSmall()
    {
        var first = AdaptedLinear.Wrap(nn.Linear(8, 8), "a").WithVeRA("default", new VeRAOptions(Rank: 2));
        var smaller = AdaptedLinear.Wrap(nn.Linear(4, 4), "b");
        var larger = AdaptedLinear.Wrap(nn.Linear(16, 4), "c");
        var model = nn.Sequential(("a", first), ("b", smaller), ("c", larger));
        model.BindSharedTensors();
        var set = ((VeRAAdapter)first.GetAdapter("default")).SharedTensors;

        smaller.WithVeRA("default", new VeRAOptions(Rank: 2));
        model.BindSharedTensors();
        Assert.Same(set, ((VeRAAdapter)smaller.GetAdapter("default")).SharedTensors);

        larger.WithVeRA("default", new VeRAOptions(Rank: 2));
        var ex = Assert.Throws<PeftConfigurationException>(() => model.BindSharedTensors());
        Assert.Contains("vera_A has 8 columns, the layer needs 16", ex.Message, StringComparison.Ordinal);
        Assert.Contains("add all its layers at once", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFewOptimizerStepsOnTheLambdasFitATargetUpdate()
    {
        var (model, adapters) = TwoLayers(new VeRAOptions(Rank: 16));
        var layer = (AdaptedLinear)model.named_children().Last().module;
        using var x = torch.randn(new long[] { 64, 6 }, generator: new Generator(4));
        using var target = torch.randn(new long[] { 64, 10 }, generator: new Generator(5));
        using var optimizer = torch.optim.Adam(model.TrainableParameters(), lr: 0.05);
        double first = double.NaN, last = double.NaN;
        for (int step = 0; step < 30; step++)
        {
            optimizer.zero_grad();
            using var loss = (layer.call(x) - target).pow(2).mean();
            loss.backward();
            optimizer.step();
            last = loss.item<float>();
            if (step == 0) first = last;
        }

        Assert.True(last < 0.9 * first, $"loss went from {first} to {last}");
        Assert.True(adapters[1].LambdaB.abs().max().item<float>() > 0);
    }

    [Fact]
    public void InvalidOptionsAreRefusedNamingTheMember()
    {
        Assert.Contains("rank must be positive", Assert.Throws<PeftConfigurationException>(() => new VeRAOptions(Rank: 0).Validate("default", "q_proj")).Message, StringComparison.Ordinal);
        Assert.Contains("Dropout must be in [0, 1)", Assert.Throws<PeftConfigurationException>(() => new VeRAOptions(Dropout: 1).Validate("default", "q_proj")).Message, StringComparison.Ordinal);
        Assert.Contains("DInitial must be finite", Assert.Throws<PeftConfigurationException>(() => new VeRAOptions(DInitial: double.NaN).Validate("default", "q_proj")).Message, StringComparison.Ordinal);
    }
}
