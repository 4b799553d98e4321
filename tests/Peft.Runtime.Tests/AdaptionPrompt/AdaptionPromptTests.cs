using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.AdaptionPrompt;

/// <summary>
/// The adaption prompt's head adjustment against hand-computed values: <c>z + g · softmax(Q K_pᵀ/√d) V_p</c> with the
/// attention's own projections of the prompt, the gradients of the gate, the prompt's value part and its key part, the
/// grouped-query repetition, the zero gate, and the configuration's refusals.
/// </summary>
public sealed class AdaptionPromptTests
{
    // head width d = 2, hidden 4; the stand-in projections read keys from hidden[0..2] and values from hidden[2..4].
    // Prompt rows: p1 = [0, 0, 4, 0], p2 = [sqrt(2)·ln 3, 0, 0, 8] => K1 = [0, 0], K2 = [sqrt(2)·ln 3, 0], V1 = [4, 0], V2 = [0, 8].
    private static readonly float s_k2 = (float)(Math.Sqrt(2) * Math.Log(3));

    [Fact]
    public void GatedSoftmaxOverThePromptIsAddedToTheHeads()
    {
        using var adapter = Hand(heads: 1, kvHeads: 1, gate: 0.5f);
        // q = [1, 0]: scores = q·K/sqrt 2 = [0, ln 3], softmax = [1/4, 3/4], weights·V = [1, 6], gated by 0.5 = [0.5, 3].
        using var heads = tensor(new float[] { 1, 1 }).view(1, 1, 1, 2);
        using var y = adapter.AdjustHeads(Context(adapter, tensor(new float[] { 1, 0 }).view(1, 1, 1, 2)), heads);
        AssertClose([1.5f, 4f], y);

        using (var loss = y.sum()) loss.backward();
        // dL/dg = sum(softmax·V) = 1 + 6 = 7. dL/dV_j = g·w_j per component: V1 0.125, V2 0.375.
        // dL/dscore_j = g·w_j·(sum V_j - 7): s1 = 0.5·0.25·(4 - 7) = -0.375, s2 = 0.5·0.75·(8 - 7) = 0.375;
        // dscore/dK = q/sqrt 2, so dL/dK1 = [-0.375/sqrt 2, 0], dL/dK2 = [0.375/sqrt 2, 0].
        AssertClose([7f], adapter.Gate.grad!);
        float k = 0.375f / MathF.Sqrt(2);
        AssertClose([-k, 0, 0.125f, 0.125f, k, 0, 0.375f, 0.375f], adapter.Prompt.grad!.flatten());
    }

    [Fact]
    public void GroupedQueryHeadsShareThePromptsKeysAndValues()
    {
        using var _ = no_grad();
        using var adapter = Hand(heads: 2, kvHeads: 1, gate: 0.5f);
        // head 0: q = [1, 0] as above => + [0.5, 3]; head 1: q = [0, 0] => softmax [1/2, 1/2], weights·V = [2, 4], gated [1, 2].
        using var heads = zeros(1, 2, 1, 2);
        using var y = adapter.AdjustHeads(Context(adapter, tensor(new float[] { 1, 0, 0, 0 }).view(1, 2, 1, 2)), heads);
        AssertClose([0.5f, 3f, 1f, 2f], y);
    }

    [Fact]
    public void AZeroGateOrAZeroPromptLeavesTheHeadsBitForBit()
    {
        using var _ = no_grad();
        using var adapter = Hand(heads: 1, kvHeads: 1, gate: 0f);
        using var heads = randn(3, 1, 5, 2);
        using var queries = randn(3, 1, 5, 2);
        using var y = adapter.AdjustHeads(Context(adapter, queries), heads);
        Assert.True(y.eq(heads).all().item<bool>());
        Assert.True(adapter.AdjustsHeads);

        // A zero prompt through bias-free projections gives K_p = V_p = 0: nothing is added whatever the gate.
        adapter.Prompt.zero_();
        adapter.Gate.fill_(0.7f);
        using var zeroPrompt = adapter.AdjustHeads(Context(adapter, queries), heads);
        Assert.True(zeroPrompt.eq(heads).all().item<bool>());
    }

    [Fact]
    public void InitIsAStandardNormalPromptAndAZeroGate()
    {
        manual_seed(3);
        using var adapter = new AdaptionPromptAdapter("default", new AdaptionPromptConfig(AdapterLen: 64, AdapterLayers: 1), new AttentionGeometry(0, 4, 4, 16, 64));
        Assert.Equal(new long[] { 1, 64, 64 }, adapter.Prompt.shape);
        Assert.Equal(0f, adapter.Gate.item<float>());
        double std = adapter.Prompt.std().item<float>();
        Assert.InRange(std, 0.95, 1.05);
        Assert.Equal(["adaption_prompt", "adaption_gate"], adapter.named_parameters().Select(p => p.name));
    }

    [Theory]
    [InlineData(0, 1, "AdapterLen")]
    [InlineData(AdaptionPromptConfig.MaxAdapterLen + 1, 1, "AdapterLen")]
    [InlineData(10, 0, "AdapterLayers")]
    public void BadFieldsAreRefusedByName(int length, int layers, string member)
    {
        var e = Assert.Throws<PeftConfigurationException>(() => new AdaptionPromptConfig(length, layers).Validate());
        Assert.Contains($"AdaptionPromptConfig.{member}", e.Message, StringComparison.Ordinal);
        Assert.Equal(member, e.MemberName);
        var deep = Assert.Throws<PeftConfigurationException>(() => new AdaptionPromptConfig(10, 3).ValidateFor(2));
        Assert.Contains("use 1 to 2", deep.Message, StringComparison.Ordinal);
    }

    private static AdaptionPromptAdapter Hand(int heads, int kvHeads, float gate)
    {
        var adapter = new AdaptionPromptAdapter("default", new AdaptionPromptConfig(AdapterLen: 2, AdapterLayers: 1), new AttentionGeometry(0, heads, kvHeads, 2, 4));
        using var _ = no_grad();
        adapter.Prompt.copy_(tensor(new float[] { 0, 0, 4, 0, s_k2, 0, 0, 8 }).view(1, 2, 4));
        adapter.Gate.fill_(gate);
        return adapter;
    }

    private static AttentionContext Context(AdaptionPromptAdapter adapter, Tensor queries) =>
        new(adapter.Geometry, queries, hidden =>
        {
            long batch = hidden.shape[0], n = hidden.shape[1];
            return (hidden[.., .., 0..2].reshape(batch, n, 1, 2).transpose(1, 2), hidden[.., .., 2..4].reshape(batch, n, 1, 2).transpose(1, 2));
        });

    private static void AssertClose(float[] expected, Tensor actual)
    {
        var values = actual.detach().flatten().data<float>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - values[i]) < 1e-5, $"[{i}]: expected {expected[i]}, got {values[i]}");
    }
}
