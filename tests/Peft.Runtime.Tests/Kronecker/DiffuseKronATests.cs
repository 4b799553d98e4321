using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Kronecker;

/// <summary>DiffuseKronA as LoKr settings: both Kronecker factors full, <c>ΔW = (alpha / r) · A ⊗ B</c>.</summary>
public class DiffuseKronATests
{
    private static KroneckerAdapter Make(long inF, long outF, KroneckerOptions options, out AdaptedLinear layer)
    {
        layer = AdaptedLinear.Wrap(nn.Linear(inF, outF), "q_proj").WithKronecker("default", options);
        return (KroneckerAdapter)layer.GetAdapter("default");
    }

    [Fact]
    public void HandComputedUpdateWithTwoFullFactors()
    {
        // Linear(4, 4): in = (2, 2), out = (2, 2). A = [[1, 2], [0, 1]], B = [[1, 0], [3, 1]], alpha / r = 1:
        // kron(A, B) = [[1, 0, 2, 0], [3, 1, 6, 2], [0, 0, 1, 0], [0, 0, 3, 1]]; with x = [1, 1, 1, 1] the update is [3, 12, 1, 4].
        var a = Make(4, 4, new KroneckerOptions(Rank: 1, Alpha: 1, FullFactors: true), out var layer);
        Assert.NotNull(a.W1);
        Assert.NotNull(a.W2);
        using (torch.no_grad())
        {
            layer.Weight.zero_();
            layer.Bias!.zero_();
            a.W1!.copy_(torch.tensor(new float[] { 1, 2, 0, 1 }).reshape(2, 2));
            a.W2!.copy_(torch.tensor(new float[] { 1, 0, 3, 1 }).reshape(2, 2));
        }

        using var x = torch.ones(1, 4);
        using var y = layer.call(x);
        TensorAssert.Equal(torch.tensor(new float[] { 3, 12, 1, 4 }).reshape(1, 4), y);
        using var delta = a.DeltaWeight();
        TensorAssert.Equal(torch.tensor(new float[] { 1, 0, 2, 0, 3, 1, 6, 2, 0, 0, 1, 0, 0, 0, 3, 1 }).reshape(4, 4), delta);
    }

    [Theory]
    [InlineData(16, 16, -1, 1, 2, 4, 4, 4, 4)]
    [InlineData(64, 128, -1, 1, 8, 8, 8, 16, 8)]
    [InlineData(64, 128, 4, 2, 16, 4, 4, 32, 16)]
    [InlineData(64, 128, -1, 16, 16, 8, 8, 16, 8)]
    public void FullFactorsRaiseRankAndAlphaToPeftsFullSettingsKeepingTheScale(
        int inF, int outF, int factor, int rank, int expectedRank, long w1Rows, long w1Cols, long w2Rows, long w2Cols)
    {
        var a = Make(inF, outF, new KroneckerOptions(Rank: rank, Alpha: 3, Factor: factor, FullFactors: true), out _);
        Assert.Equal(expectedRank, a.Options.Rank);
        Assert.Equal(3.0 * expectedRank / rank, a.Options.Alpha, 12);
        Assert.Equal(3.0 / rank, a.Options.Scaling, 12);
        Assert.False(a.Options.FullFactors);
        Assert.Equal(new[] { "lokr_w1", "lokr_w2" }, a.PeftTensors().Select(t => t.PeftName));
        Assert.Equal(new[] { w1Rows, w1Cols }, a.W1!.shape);
        Assert.Equal(new[] { w2Rows, w2Cols }, a.W2!.shape);
        long count = w1Rows * w1Cols + w2Rows * w2Cols;
        Assert.Equal(count, a.TrainableParameterCount);
        Assert.Equal(count, KroneckerRules.ParameterCount(inF, outF, rank, factor, decomposeBoth: false, fullFactors: true));
    }

    [Fact]
    public void WithoutFullFactorsTheSameRankFactorsW2()
    {
        var a = Make(16, 16, new KroneckerOptions(Rank: 1, Alpha: 3), out _);
        Assert.Equal(new[] { "lokr_w1", "lokr_w2_a", "lokr_w2_b" }, a.PeftTensors().Select(t => t.PeftName));
    }
}
