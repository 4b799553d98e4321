using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.LoFiT;

/// <summary>
/// LoFiT's head adjustment against hand-computed values (<c>z_h ← (1 + A_h) ⊙ z_h + v_h</c>), its gradients, the L1 term,
/// heads outside the selection left alone, the fold into the output projection (merge equals unmerged) and the
/// configuration's refusals.
/// </summary>
public sealed class LoFiTTests
{
    [Fact]
    public void ScaleAndOffsetActOnTheHeadAndGiveTheirGradients()
    {
        // The catalogue's example: z = [1, 2], A = [1, 0], v = [0, 1] => (1 + A) ⊙ z + v = [2, 2] + [0, 1] = [2, 3].
        using var adapter = Hand(new LoFiTConfig(LoFiTComponents.ScaleAndBias), heads: 1, selected: [0], a: [1, 0], v: [0, 1]);
        using var z = tensor(new float[] { 1, 2 }).view(1, 1, 1, 2);
        using var y = adapter.AdjustHeads(Context(adapter), z);
        AssertClose([2f, 3f], y);

        // L = Σ y: dL/dA = z = [1, 2], dL/dv = [1, 1].
        using (var loss = y.sum()) loss.backward();
        AssertClose([1f, 2f], adapter.Scale!.grad!);
        AssertClose([1f, 1f], adapter.Bias!.grad!);
    }

    [Fact]
    public void HeadsOutsideTheSelectionPassUnchangedAndGetNoVector()
    {
        // Two heads of width 2, only head 1 selected: z = [[1, 2], [3, 4]], A_1 = [1, -1], v_1 = [5, 0] => [[1, 2], [11, 0]].
        using var adapter = Hand(new LoFiTConfig(LoFiTComponents.ScaleAndBias), heads: 2, selected: [1], a: [1, -1], v: [5, 0]);
        Assert.Equal(new long[] { 1, 2 }, adapter.Scale!.shape);
        using var z = tensor(new float[] { 1, 2, 3, 4 }).view(1, 2, 1, 2);
        using var y = adapter.AdjustHeads(Context(adapter), z);
        AssertClose([1f, 2f, 11f, 0f], y);
        using (var loss = y.mul(tensor(new float[] { 1, 1, 2, 3 }).view(1, 2, 1, 2)).sum()) loss.backward();
        // dL/dA_1 = g ⊙ z_1 = [2·3, 3·4]; dL/dv_1 = g = [2, 3].
        AssertClose([6f, 12f], adapter.Scale.grad!);
        AssertClose([2f, 3f], adapter.Bias!.grad!);
    }

    [Fact]
    public void StageOneHoldsScalesOnlyAndItsL1TermIsLambdaTimesTheAbsoluteSum()
    {
        using var adapter = Hand(new LoFiTConfig(LoFiTComponents.Scale, L1Lambda: 0.5), heads: 2, selected: [0, 1], a: [1, -2, 0.5f, 0], v: null);
        Assert.Null(adapter.Bias);
        Assert.Equal(["lofit_A"], adapter.named_parameters().Select(p => p.name));
        // 0.5 · (1 + 2 + 0.5 + 0) = 1.75; d/dA = 0.5 · sign(A) (0 at 0).
        using var term = adapter.LossTerm();
        Assert.Equal(1.75f, term.item<float>(), 6);
        term.backward();
        AssertClose([0.5f, -0.5f, 0.5f, 0f], adapter.Scale!.grad!);
        // ‖A_0‖ = √5, ‖A_1‖ = 0.5.
        var norms = adapter.ScaleNorms();
        Assert.Equal(Math.Sqrt(5), norms[0].Norm, 6);
        Assert.Equal(0.5, norms[1].Norm, 6);
    }

    [Fact]
    public void TheFoldIntoTheOutputProjectionEqualsTheAdjustedHeadsProjected()
    {
        // W = [[1, 2], [3, 4]], b = 0, one head: W((1 + A) ⊙ z + v) = W [2, 3] = [8, 18];
        // W' = W with columns scaled by (1 + A) = [2, 1] = [[2, 2], [6, 4]], b' = W v = [2, 4]; W' z + b' = [8, 18].
        using var weight = tensor(new float[] { 1, 2, 3, 4 }).view(2, 2);
        using var bias = zeros(2);
        using var a = tensor(new float[] { 1, 0 }).view(1, 2);
        using var v = tensor(new float[] { 0, 1 }).view(1, 2);
        LoFiTMath.Fold(weight, bias, [0], 2, a, v);
        AssertClose([2f, 2f, 6f, 4f], weight);
        AssertClose([2f, 4f], bias);
        using var z = tensor(new float[] { 1, 2 });
        AssertClose([8f, 18f], weight.matmul(z) + bias);
    }

    [Fact]
    public void TheFoldTouchesOnlyTheSelectedHeadsColumns()
    {
        // Two heads of width 1, head 1 selected: W = [[1, 2], [3, 4]], A_1 = [2], v_1 = [1] => column 1 × 3, b += W[:, 1] · 1.
        using var weight = tensor(new float[] { 1, 2, 3, 4 }).view(2, 2);
        using var bias = tensor(new float[] { 10, 20 });
        LoFiTMath.Fold(weight, bias, [1], 1, tensor(new float[] { 2 }).view(1, 1), tensor(new float[] { 1 }).view(1, 1));
        AssertClose([1f, 6f, 3f, 12f], weight);
        AssertClose([12f, 24f], bias);
    }

    [Fact]
    public void BadConfigurationsAndSelectionsAreRefusedByName()
    {
        // Values the analyzer cannot see (PEFT0033 refuses them as constants), as a configuration file or a computation gives them.
        double negative = -1, notANumber = double.NaN;
        Assert.Equal("L1Lambda", Assert.Throws<PeftConfigurationException>(() => new LoFiTConfig(L1Lambda: negative).Validate()).MemberName);
        Assert.Equal("InitStd", Assert.Throws<PeftConfigurationException>(() => new LoFiTConfig(InitStd: notANumber).Validate()).MemberName);
        var geometry = new AttentionGeometry(2, 4, 4, 2, 8);
        Assert.Contains("0 to 3", Assert.Throws<PeftConfigurationException>(() => new LoFiTAdapter("x", new LoFiTConfig(), geometry, [4])).Message, StringComparison.Ordinal);
        Assert.Contains("twice", Assert.Throws<PeftConfigurationException>(() => new LoFiTHeadSelection([new(0, 1), new(0, 1)])).Message, StringComparison.Ordinal);
    }

    private static LoFiTAdapter Hand(LoFiTConfig config, int heads, int[] selected, float[] a, float[]? v)
    {
        var adapter = new LoFiTAdapter("lofit", config, new AttentionGeometry(0, heads, heads, 2, 2L * heads), selected);
        using var _ = no_grad();
        adapter.Scale?.copy_(tensor(a).view(selected.Length, -1));
        if (v is not null) adapter.Bias?.copy_(tensor(v).view(selected.Length, -1));
        return adapter;
    }

    private static AttentionContext Context(LoFiTAdapter adapter) =>
        new(adapter.Geometry, zeros(1, adapter.Geometry.Heads, 1, adapter.Geometry.HeadDim), h => throw new InvalidOperationException("LoFiT reads no projection"));

    private static void AssertClose(float[] expected, Tensor actual)
    {
        var values = actual.detach().cpu().to_type(ScalarType.Float32).reshape(-1).data<float>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - values[i]) < 1e-5, $"[{i}]: expected {expected[i]}, got {values[i]}");
    }
}
