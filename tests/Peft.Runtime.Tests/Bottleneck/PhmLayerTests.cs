using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Bottleneck;

/// <summary>
/// Compacter's PHM layer against hand-computed values (the catalogue's n = 2 example, checked by hand: H = blockdiag(W₁, I)),
/// its gradients, and the factored path against forming H.
/// </summary>
public sealed class PhmLayerTests
{
    [Theory]
    [InlineData(PhmPath.Dense)]
    [InlineData(PhmPath.Factored)]
    public void TheCataloguesExampleGivesXTimesBlockDiagonalH(PhmPath path)
    {
        // n = 2, in = out = 4, k = 2: A₁ = diag(1, 0), A₂ = diag(0, 1); W₁ = [[1, 2], [3, 4]] (W_left₁ = W₁, W_right₁ = I),
        // W₂ = I (both factors I). H = A₁ ⊗ W₁ + A₂ ⊗ I = blockdiag(W₁, I).
        using var layer = Hand(path);
        using var h = layer.Matrix();
        AssertClose([1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], h);

        // x = [1, 1, 1, 1]: xH = [1 + 3, 2 + 4, 1, 1] = [4, 6, 1, 1] (x·H, not Hᵀ: Hᵀ would give [3, 7, 1, 1]), plus b = [0.5, 0, 0, -1].
        // x = [1, 2, 3, 4]: [1 + 6, 2 + 8, 3, 4] = [7, 10, 3, 4], plus b.
        using var x = tensor(new float[] { 1, 1, 1, 1, 1, 2, 3, 4 }).view(2, 4);
        using var y = layer.call(x);
        AssertClose([4.5f, 6, 1, 0, 7.5f, 10, 3, 3], y);

        // L = Σ y over the first row only: dL/dH = x₁ᵀ·1 = all ones, so dL/dA_i[p, q] = Σ W_i = 10 for W₁ and 2 for I;
        // dL/dW_i = Σ_pq A_i[p, q] = 1 everywhere; dL/dW_left_i = dW·W_right_iᵀ = ones; dL/dW_right₁ = W₁ᵀ·ones = [[4, 4], [6, 6]],
        // dL/dW_right₂ = ones; dL/db = 1.
        using (var loss = y[0].sum()) loss.backward();
        var rule = layer.Rule;
        AssertClose([10, 10, 10, 10, 2, 2, 2, 2], rule.grad!);
        AssertClose([1, 1, 1, 1, 1, 1, 1, 1], layer.WeightLeft.grad!);
        AssertClose([4, 4, 6, 6, 1, 1, 1, 1], layer.WeightRight.grad!);
        AssertClose([1, 1, 1, 1], layer.Bias.grad!);
    }

    [Theory]
    [InlineData(8, 4, 2, 1, 3)]
    [InlineData(16, 8, 4, 2, 5)]
    [InlineData(12, 24, 4, 3, 1)]
    public void TheFactoredPathEqualsFormingHInOutputAndGradients(int input, int output, int n, int k, int rows)
    {
        torch.manual_seed(11);
        var results = new List<Tensor[]>();
        using var x = torch.randn(rows, 2, input);
        using var rule = torch.randn(n, n, n);
        foreach (var path in new[] { PhmPath.Dense, PhmPath.Factored })
        {
            torch.manual_seed(3);
            using var layer = new PhmLayer(input, output, n, k, "test") { Path = path };
            var set = new SharedAdapterTensors([(PhmLayer.RuleName, rule.clone())], true, [PhmLayer.RuleName]);
            layer.Bind(set);
            using (no_grad()) layer.Bias.normal_();
            var y = layer.call(x);
            using (var loss = (y * y).sum()) loss.backward();
            results.Add([y.detach(), layer.Rule.grad!.clone(), layer.WeightLeft.grad!.clone(), layer.WeightRight.grad!.clone(), layer.Bias.grad!.clone()]);
        }

        for (int i = 0; i < results[0].Length; i++)
        {
            double scale = Math.Max(1.0, results[0][i].abs().max().item<float>());
            double diff = (results[0][i] - results[1][i]).abs().max().item<float>();
            Assert.True(diff <= 1e-5 * scale, $"tensor {i}: dense and factored differ by {diff} (scale {scale})");
        }
    }

    [Fact]
    public void AutoPicksTheFactoredPathWhenItDoesFewerMultiplyAdds()
    {
        // 512 → 16, n = 4, k = 1 (Compacter on a 512-wide model): factored 4·(512 + 16 + 16) = 2176 per row against 512·16 = 8192.
        using var down = new PhmLayer(512, 16, 4, 1, "test");
        Assert.True(down.FactoredIsCheaper(1));
        Assert.True(down.FactoredIsCheaper(4096));
        // 8 → 8 with n = 2, k = 4: factored 2·4·(8 + 4 + 8) = 160 per row against 64: form H.
        using var wide = new PhmLayer(8, 8, 2, 4, "test");
        Assert.False(wide.FactoredIsCheaper(100));
    }

    [Fact]
    public void AWidthPhmDimDoesNotDivideIsRefusedNamingTheLayer()
    {
        var ex = Assert.Throws<PeftConfigurationException>(() => new PhmLayer(6, 4, 4, 1, "blocks.0.output_adapters.adapter_up"));
        Assert.Contains("phm_dim = 4", ex.Message, StringComparison.Ordinal);
        Assert.Contains("6-wide input", ex.Message, StringComparison.Ordinal);
        Assert.Contains("blocks.0.output_adapters.adapter_up", ex.Message, StringComparison.Ordinal);
    }

    private static PhmLayer Hand(PhmPath path)
    {
        var layer = new PhmLayer(4, 4, 2, 2, "test") { Path = path };
        var rule = tensor(new float[] { 1, 0, 0, 0, 0, 0, 0, 1 }).view(2, 2, 2);
        layer.Bind(new SharedAdapterTensors([(PhmLayer.RuleName, rule)], true, [PhmLayer.RuleName]));
        using (no_grad())
        {
            layer.WeightLeft.copy_(tensor(new float[] { 1, 2, 3, 4, 1, 0, 0, 1 }).view(2, 2, 2));
            layer.WeightRight.copy_(tensor(new float[] { 1, 0, 0, 1, 1, 0, 0, 1 }).view(2, 2, 2));
            layer.Bias.copy_(tensor(new float[] { 0.5f, 0, 0, -1 }));
        }

        return layer;
    }

    internal static void AssertClose(float[] expected, Tensor actual)
    {
        var values = actual.detach().to_type(ScalarType.Float32).flatten().data<float>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - values[i]) < 1e-5f, $"[{i}]: expected {expected[i]}, got {values[i]}");
    }
}
