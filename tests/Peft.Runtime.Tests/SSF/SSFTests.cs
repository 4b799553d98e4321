using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.SSF;

/// <summary>
/// SSF against hand-computed examples. The catalogue's: γ = [2, 3], β = [1, −1], W = I, b = 0, x = [1, 1] ⇒ y = γ ⊙ x + β =
/// [3, 2], and the merged Linear (W' = diag(γ) = [[2, 0], [0, 3]], b' = β) gives the same. With W = [[1, 2], [3, 4]],
/// b = [1, −1]: z = Wx + b = [4, 6] ⇒ y = [9, 17]; ∂γ = z = [4, 6], ∂β = [1, 1] for Σy; merged W' = [[2, 4], [9, 12]],
/// b' = γ ⊙ b + β = [3, −4] ⇒ [9, 17].
/// </summary>
public class SSFTests
{
    private static (AdaptedLinear Layer, SSFAdapter Adapter) Layer(float[] weight, float[] bias, bool hasBias = true)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(2, 2, hasBias: hasBias), "fc");
        using (no_grad())
        {
            layer.Weight.copy_(tensor(weight, new long[] { 2, 2 }));
            layer.Bias?.copy_(tensor(bias));
        }

        layer.Weight.requires_grad = false;
        if (layer.Bias is not null) layer.Bias.requires_grad = false;
        layer.WithAdapter("default", new SSFOptions());
        var adapter = (SSFAdapter)layer.GetAdapter("default");
        using (no_grad())
        {
            adapter.Scale.copy_(tensor(new float[] { 2, 3 }));
            adapter.Shift.copy_(tensor(new float[] { 1, -1 }));
        }

        return (layer, adapter);
    }

    [Fact]
    public void TheCataloguesExampleGivesThreeTwoUnmergedAndMerged()
    {
        var (layer, _) = Layer(new float[] { 1, 0, 0, 1 }, new float[] { 0, 0 });
        using (layer)
        {
            using var x = tensor(new float[] { 1, 1 }, new long[] { 1, 2 });
            using var expected = tensor(new float[] { 3, 2 }, new long[] { 1, 2 });
            using (no_grad()) using (var y = layer.forward(x)) TensorAssert.Equal(expected, y);
            layer.Merge();
            TensorAssert.Equal(tensor(new float[] { 2, 0, 0, 3 }, new long[] { 2, 2 }), layer.Weight);
            TensorAssert.Equal(tensor(new float[] { 1, -1 }), layer.Bias!);
            using (no_grad()) using (var y = layer.forward(x)) TensorAssert.Equal(expected, y);
            layer.Unmerge();
            TensorAssert.Equal(tensor(new float[] { 1, 0, 0, 1 }, new long[] { 2, 2 }), layer.Weight);
            TensorAssert.Equal(tensor(new float[] { 0, 0 }), layer.Bias!);
        }
    }

    [Fact]
    public void GradientsAreTheBaseOutputForTheScaleAndOnesForTheShift()
    {
        var (layer, adapter) = Layer(new float[] { 1, 2, 3, 4 }, new float[] { 1, -1 });
        using (layer)
        {
            using var x = tensor(new float[] { 1, 1 }, new long[] { 1, 2 });
            using var y = layer.forward(x);
            TensorAssert.Equal(tensor(new float[] { 9, 17 }, new long[] { 1, 2 }), y);
            using (var loss = y.sum()) loss.backward();
            TensorAssert.Equal(tensor(new float[] { 4, 6 }), adapter.Scale.grad!);
            TensorAssert.Equal(tensor(new float[] { 1, 1 }), adapter.Shift.grad!);
            Assert.Null(layer.Weight.grad);

            layer.Merge();
            TensorAssert.Equal(tensor(new float[] { 2, 4, 9, 12 }, new long[] { 2, 2 }), layer.Weight);
            TensorAssert.Equal(tensor(new float[] { 3, -4 }), layer.Bias!);
            using (no_grad()) using (var merged = layer.forward(x)) TensorAssert.Equal(y.detach(), merged);
        }
    }

    [Fact]
    public void OnALayerNormItScalesAndShiftsTheNormalisedOutputAndMergesIntoItsParameters()
    {
        using var norm = AdaptedNorm.Wrap(nn.LayerNorm(3), "ln");
        norm.WithAdapter("default", new SSFOptions());
        var adapter = (SSFAdapter)norm.GetAdapter("default");
        using (no_grad())
        {
            adapter.Scale.copy_(tensor(new float[] { 2, 1, 0.5f }));
            adapter.Shift.copy_(tensor(new float[] { 0, 1, -1 }));
        }

        // x̂ = [−1.2247357, 0, 1.2247357] (eps 1e-5), w = 1, b = 0: y = γ ⊙ x̂ + β.
        using var x = tensor(new float[] { 1, 2, 3 }, new long[] { 1, 3 });
        using var expected = tensor(new float[] { -2.4494714f, 1, -0.3876322f }, new long[] { 1, 3 });
        using (no_grad()) using (var y = norm.forward(x)) TensorAssert.Close(expected, y, 1e-6);
        norm.Merge();
        TensorAssert.Equal(tensor(new float[] { 2, 1, 0.5f }), norm.Weight);
        TensorAssert.Equal(tensor(new float[] { 0, 1, -1 }), norm.Bias!);
        using (no_grad()) using (var y = norm.forward(x)) TensorAssert.Close(expected, y, 1e-6);
        norm.Unmerge();
        TensorAssert.Equal(torch.ones(3), norm.Weight);
        TensorAssert.Equal(torch.zeros(3), norm.Bias!);
    }

    [Fact]
    public void TheInitIsNormalAroundOneAndZeroWithStandardDeviationPointZeroTwo()
    {
        torch.manual_seed(11);
        using var layer = AdaptedLinear.Wrap(nn.Linear(4, 20000), "fc");
        layer.WithAdapter("default", new SSFOptions());
        var adapter = (SSFAdapter)layer.GetAdapter("default");
        Assert.InRange(adapter.Scale.mean().item<float>(), 0.999f, 1.001f);
        Assert.InRange(adapter.Scale.std().item<float>(), 0.019f, 0.021f);
        Assert.InRange(adapter.Shift.mean().item<float>(), -0.001f, 0.001f);
        Assert.InRange(adapter.Shift.std().item<float>(), 0.019f, 0.021f);
    }

    [Fact]
    public void WithoutABiasItTrainsUnmergedAndMergingIsRefusedNamingTheMember()
    {
        var (layer, _) = Layer(new float[] { 1, 0, 0, 1 }, new float[] { 0, 0 }, hasBias: false);
        using (layer)
        {
            using var x = tensor(new float[] { 1, 1 }, new long[] { 1, 2 });
            using (no_grad()) using (var y = layer.forward(x)) TensorAssert.Equal(tensor(new float[] { 3, 2 }, new long[] { 1, 2 }), y);
            var ex = Assert.Throws<PeftConfigurationException>(() => layer.Merge());
            Assert.Contains("'fc'", ex.Message, StringComparison.Ordinal);
            Assert.Contains("no bias to hold the shift", ex.Message, StringComparison.Ordinal);
            Assert.Contains("hasBias: true", ex.Message, StringComparison.Ordinal);
            Assert.Empty(layer.MergedAdapters);
            TensorAssert.Equal(tensor(new float[] { 1, 0, 0, 1 }, new long[] { 2, 2 }), layer.Weight);   // untouched
        }
    }

    [Fact]
    public void AScaleWithAnExactZeroIsNotMerged()
    {
        var (layer, adapter) = Layer(new float[] { 1, 2, 3, 4 }, new float[] { 1, -1 });
        using (layer)
        {
            using (no_grad()) adapter.Scale[1] = 0f;
            var ex = Assert.Throws<PeftConfigurationException>(() => layer.Merge());
            Assert.Contains("exact zero", ex.Message, StringComparison.Ordinal);
            TensorAssert.Equal(tensor(new float[] { 1, -1 }), layer.Bias!);
        }
    }
}
