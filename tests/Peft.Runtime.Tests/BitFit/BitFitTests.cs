using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.BitFit;

/// <summary>
/// BitFit against a hand-computed example: W = [[1, 2], [3, 4]], b = [1, −1], x = [1, 1] ⇒ base y = Wx + b = [4, 6]; the copy
/// starts equal to b (y unchanged); with the trained copy b' = [0.5, 2] ⇒ y = [3 + 0.5, 7 + 2] = [3.5, 9]; ∂b' of Σy over N
/// rows is N per entry and W gets none; merged bias = b', unmerge restores b exactly.
/// </summary>
public class BitFitTests
{
    private static AdaptedLinear Layer()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(2, 2), "fc");
        using (no_grad())
        {
            layer.Weight.copy_(tensor(new float[] { 1, 2, 3, 4 }, new long[] { 2, 2 }));
            layer.Bias!.copy_(tensor(new float[] { 1, -1 }));
        }

        return layer;
    }

    [Fact]
    public void TheHandExampleStartsAtTheBaseThenRunsWithTheTrainedBias()
    {
        using var layer = Layer();
        using var x = tensor(new float[] { 1, 1, 1, 1, 1, 1 }, new long[] { 3, 2 });
        layer.WithAdapter("default", new BitFitOptions());
        var adapter = (BitFitAdapter)layer.GetAdapter("default");
        using (var y0 = layer.forward(x)) TensorAssert.Equal(tensor(new float[] { 4, 6, 4, 6, 4, 6 }, new long[] { 3, 2 }), y0);
        TensorAssert.Equal(tensor(new float[] { 1, -1 }), adapter.Bias);

        using (no_grad()) adapter.Bias.copy_(tensor(new float[] { 0.5f, 2 }));
        layer.Weight.requires_grad = false;
        layer.Bias!.requires_grad = false;
        using var y = layer.forward(x);
        using var expected = tensor(new float[] { 3.5f, 9, 3.5f, 9, 3.5f, 9 }, new long[] { 3, 2 });
        TensorAssert.Equal(expected, y);
        using (var loss = y.sum()) loss.backward();
        TensorAssert.Equal(tensor(new float[] { 3, 3 }), adapter.Bias.grad!);
        Assert.Null(layer.Weight.grad);

        layer.Merge();
        TensorAssert.Equal(tensor(new float[] { 0.5f, 2 }), layer.Bias);
        using (no_grad()) using (var merged = layer.forward(x)) TensorAssert.Equal(expected, merged);
        layer.Unmerge();
        TensorAssert.Equal(tensor(new float[] { 1, -1 }), layer.Bias);
    }

    [Fact]
    public void OnANormTheTrainedBiasReplacesTheNormsBias()
    {
        using var norm = AdaptedNorm.Wrap(nn.LayerNorm(3), "ln");
        norm.WithAdapter("default", new BitFitOptions());
        var adapter = (BitFitAdapter)norm.GetAdapter("default");
        using (no_grad()) adapter.Bias.copy_(tensor(new float[] { 1, 0, -1 }));
        using var x = tensor(new float[] { 1, 2, 3 }, new long[] { 1, 3 });
        using var y = norm.forward(x);
        // x̂ = [−1.2247357, 0, 1.2247357] (eps 1e-5), weight ones: y = x̂ + [1, 0, −1].
        TensorAssert.Close(tensor(new float[] { -0.2247357f, 0, 0.2247357f }, new long[] { 1, 3 }), y, 1e-6);
    }

    [Fact]
    public void ALayerWithoutABiasIsRefusedNamingTheMemberAndTheFix()
    {
        using var layer = AdaptedLinear.Wrap(nn.Linear(2, 2, hasBias: false), "q_proj");
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new BitFitOptions()));
        Assert.Contains("'q_proj'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("has no bias", ex.Message, StringComparison.Ordinal);
        Assert.Contains("exclude_modules", ex.Message, StringComparison.Ordinal);
        Assert.Equal("q_proj", ex.MemberName);
    }

    [Fact]
    public void BitFitAndLNTuningCannotBothReplaceANormsParameters()
    {
        using var norm = AdaptedNorm.Wrap(nn.LayerNorm(3), "ln");
        norm.WithAdapter("bitfit", new BitFitOptions());
        norm.WithAdapter("ln", new LNTuningOptions());
        Assert.Throws<PeftConfigurationException>(() => norm.SetActiveAdapters("bitfit", "ln"));
    }
}
