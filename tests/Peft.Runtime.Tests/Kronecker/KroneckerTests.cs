using Peft.Runtime.Tests.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Kronecker;

public class KroneckerTests
{
    private static (AdaptedLinear Layer, KroneckerAdapter Adapter) Make(long inF, long outF, KroneckerOptions options)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(inF, outF), "v_proj").WithKronecker("default", options);
        return (layer, (KroneckerAdapter)layer.GetAdapter("default"));
    }

    private static void RandomizeAll(KroneckerAdapter a)
    {
        foreach (var (_, p) in a.PeftTensors())
        {
            TensorAssert.Randomize(p, 0.3);
        }
    }

    /// <summary>W1 and W2 as dense matrices, differentiable.</summary>
    private static (Tensor W1, Tensor W2) Factors(KroneckerAdapter a) =>
        (a.W1 is not null ? a.W1.alias() : a.W1A!.matmul(a.W1B!),
         a.W2 is not null ? a.W2.alias() : a.W2A!.matmul(a.W2B!));

    [Theory]
    [InlineData(128, -1, 8, 16)]
    [InlineData(768, -1, 24, 32)]
    [InlineData(64, -1, 8, 8)]
    [InlineData(100, -1, 10, 10)]
    [InlineData(7, -1, 1, 7)]
    [InlineData(64, 4, 4, 16)]
    [InlineData(64, 16, 4, 16)]
    [InlineData(1, -1, 1, 1)]
    [InlineData(4096, -1, 64, 64)]
    [InlineData(11008, -1, 86, 128)]
    [InlineData(64, 3, 2, 32)]
    [InlineData(96, 5, 4, 24)]
    public void FactorizeMatchesPeft(int dimension, int factor, int small, int large)
    {
        Assert.Equal((small, large), KroneckerRules.Factorize(dimension, factor));
    }

    [Theory]
    [InlineData(4, false, new[] { "lokr_w1", "lokr_w2_a", "lokr_w2_b" }, new long[] { 8, 8, 16, 4, 4, 8 })]
    [InlineData(8, false, new[] { "lokr_w1", "lokr_w2" }, new long[] { 8, 8, 16, 8 })]
    [InlineData(4, true, new[] { "lokr_w1", "lokr_w2_a", "lokr_w2_b" }, new long[] { 8, 8, 16, 4, 4, 8 })]
    [InlineData(2, true, new[] { "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b" }, new long[] { 8, 2, 2, 8, 16, 2, 2, 8 })]
    public void ParameterNamesAndShapesForLinear64To128(int rank, bool decomposeBoth, string[] names, long[] shapes)
    {
        var (layer, a) = Make(64, 128, new KroneckerOptions(Rank: rank, DecomposeBoth: decomposeBoth));
        Assert.Equal((8, 16), a.OutFactors);
        Assert.Equal((8, 8), a.InFactors);
        var tensors = a.PeftTensors().ToList();
        Assert.Equal(names, tensors.Select(t => t.PeftName));
        Assert.Equal(shapes, tensors.SelectMany(t => t.Parameter.shape));
        Assert.Equal(names, a.named_parameters(recurse: false).Select(p => p.name).OrderBy(n => Array.IndexOf(names, n)));
        Assert.Equal(new[] { "weight", "bias" }.Concat(names.Select(n => "default." + n)), layer.state_dict().Keys);
        Assert.Equal(shapes.Chunk(2).Sum(s => s[0] * s[1]), a.TrainableParameterCount);
    }

    [Fact]
    public void FactorOptionIsPassedToTheFactorization()
    {
        var (_, a) = Make(64, 128, new KroneckerOptions(Rank: 8, Factor: 4));
        Assert.Equal((4, 16), a.InFactors);
        Assert.Equal((4, 32), a.OutFactors);
        Assert.Equal(new[] { "lokr_w1", "lokr_w2_a", "lokr_w2_b" }, a.PeftTensors().Select(t => t.PeftName));
        Assert.Equal(new long[] { 4, 4 }, a.W1!.shape);
        Assert.Equal(new long[] { 32, 8 }, a.W2A!.shape);
        Assert.Equal(new long[] { 8, 16 }, a.W2B!.shape);
    }

    [Theory]
    [InlineData(0, 8.0, -1, "rank must be positive")]
    [InlineData(4, -1.0, -1, "alpha must be positive")]
    [InlineData(4, 8.0, 0, "factor must be -1")]
    public void InvalidOptionsAreRejected(int rank, double alpha, int factor, string expected)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(16, 16), "v_proj");
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithKronecker("k", new KroneckerOptions(rank, alpha, factor)));
        Assert.Contains(expected, ex.Message);
        Assert.Contains("'k' on member 'v_proj'", ex.Message);
    }

    [Fact]
    public void InitialisationMatchesPeftAndTheLayerEqualsBase()
    {
        torch.manual_seed(31);
        var linear = nn.Linear(64, 128);
        using var x = torch.randn(4, 64);
        using var expected = linear.call(x);
        var layer = AdaptedLinear.Wrap(linear, "v_proj")
            .WithKronecker("full", new KroneckerOptions(Rank: 8))
            .WithKronecker("both", new KroneckerOptions(Rank: 2, DecomposeBoth: true));
        var full = (KroneckerAdapter)layer.GetAdapter("full");
        var both = (KroneckerAdapter)layer.GetAdapter("both");

        using (var z = torch.zeros_like(full.W1!))
        {
            TensorAssert.Equal(z, full.W1!);
        }

        using (var z = torch.zeros_like(both.W1A!))
        {
            TensorAssert.Equal(z, both.W1A!);
        }

        // kaiming_uniform_(a = √5) on [k, n] is U(-1/√n, 1/√n).
        using (var m = full.W2!.abs().max())
        {
            Assert.InRange(m.item<float>(), 0.2, 1 / Math.Sqrt(8) + 1e-6);
        }

        using (var m = both.W1B!.abs().max())
        {
            Assert.InRange(m.item<float>(), 0.2, 1 / Math.Sqrt(8) + 1e-6);
        }

        layer.SetActiveAdapters("full", "both");
        using var actual = layer.call(x);
        TensorAssert.Equal(expected, actual);
    }

    [Theory]
    [InlineData(64, 128, 4, false)]
    [InlineData(64, 128, 8, false)]
    [InlineData(64, 128, 2, true)]
    [InlineData(48, 20, 3, true)]
    [InlineData(7, 10, 2, false)]
    public void StructuredForwardEqualsTheDenseKroneckerProduct(int inF, int outF, int rank, bool both)
    {
        torch.manual_seed(32);
        var (layer, a) = Make(inF, outF, new KroneckerOptions(Rank: rank, Alpha: 6, DecomposeBoth: both));
        RandomizeAll(a);
        using var x = torch.randn(5, inF);

        using var noGrad = torch.no_grad();
        var (w1, w2) = Factors(a);
        using var kron = torch.kron(w1, w2);
        using var dense = kron * (6.0 / rank);
        using var expected = F.linear(x, layer.Weight, layer.Bias) + x.matmul(dense.t());
        using var actual = layer.call(x);
        TensorAssert.Close(expected, actual, 1e-5);

        using var delta = a.DeltaWeight();
        TensorAssert.Close(dense, delta, 1e-6);

        using var x3 = torch.randn(2, 3, inF);
        using var expected3 = F.linear(x3, layer.Weight, layer.Bias) + x3.matmul(dense.t());
        using var actual3 = layer.call(x3);
        TensorAssert.Close(expected3, actual3, 1e-5);
    }

    [Theory]
    [InlineData(4, false)]
    [InlineData(8, false)]
    [InlineData(2, true)]
    public void GradientsEqualTheDenseFormulations(int rank, bool both)
    {
        torch.manual_seed(33);
        var (layer, a) = Make(64, 128, new KroneckerOptions(Rank: rank, Alpha: 4, DecomposeBoth: both));
        layer.ApplyTrainability();
        RandomizeAll(a);
        using var x = torch.randn(6, 64);
        using var g = torch.randn(6, 128);

        using (var y = layer.call(x))
        using (var loss = (y * g).sum())
        {
            loss.backward();
        }

        var structured = a.PeftTensors().Select(t => t.Parameter.grad!.detach().clone()).ToList();
        foreach (var (_, p) in a.PeftTensors())
        {
            p.grad = null;
        }

        var (w1, w2) = Factors(a);
        using var dense = torch.kron(w1, w2) * (4.0 / rank);
        using (var y = F.linear(x, layer.Weight, layer.Bias) + x.matmul(dense.t()))
        using (var loss = (y * g).sum())
        {
            loss.backward();
        }

        var names = a.PeftTensors().Select(t => t.PeftName).ToList();
        var reference = a.PeftTensors().Select(t => t.Parameter.grad!).ToList();
        for (int i = 0; i < reference.Count; i++)
        {
            using var norm = reference[i].abs().max();
            Assert.True(norm.item<float>() > 0 || names[i] == "lokr_w1_b", $"{names[i]} has no gradient in the dense formulation");
            TensorAssert.Close(reference[i], structured[i], 1e-4);
        }

        Assert.Null(layer.Weight.grad);
    }

    [Fact]
    public void MergeAndUnmerge()
    {
        torch.manual_seed(34);
        var (layer, a) = Make(64, 128, new KroneckerOptions(Rank: 4, Alpha: 8));
        RandomizeAll(a);
        using var original = layer.Weight.detach().clone();
        using var x = torch.randn(3, 64);
        using var unmerged = layer.call(x);

        layer.Merge();
        using var merged = layer.call(x);
        TensorAssert.Close(unmerged, merged, 1e-4);
        using (var plain = F.linear(x, layer.Weight, layer.Bias))
        {
            TensorAssert.Equal(plain, merged);
        }

        layer.Unmerge();
        TensorAssert.Close(original, layer.Weight, 1e-5);
        using var restored = layer.call(x);
        TensorAssert.Close(unmerged, restored, 1e-5);
    }
}
