using Peft.Models.Llama;
using Peft.Models.Tests.Llama;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Targets;

/// <summary>P-tuning on a decoder: the encoder's prompt enters the key/value cache once, so cached decoding equals the full
/// forward, for the MLP and the LSTM encoder.</summary>
public sealed class PTuningGenerationTests
{
    [Theory]
    [InlineData(PromptEncoderType.MLP)]
    [InlineData(PromptEncoderType.LSTM)]
    public void GenerationWithACacheMatchesTheFullForward(PromptEncoderType encoder)
    {
        using var model = TinyLlama.Create(9);
        using var ids = TinyLlama.RandomIds(31, 2, 6);
        using var _ = no_grad();
        using var plain = model.call(ids);
        var wrapped = model.ApplyTargets(new PeftTargets(LlamaTargets.PromptEmbedding, new PTuningOptions(4, EncoderHiddenSize: 16, EncoderType: encoder)));
        Assert.Equal(new[] { "model.embed_tokens" }, wrapped);
        using var full = model.call(ids);
        Assert.Equal(new long[] { 2, 10, 64 }, full.shape);
        using (var text = model.StripVirtualTokens(full)) Assert.False(text.allclose(plain, rtol: 1e-4, atol: 1e-5), "the prompt does not reach the text's logits");

        using var cache = new KvCache(2);
        using var first = model.Forward(ids[.., ..4], cache);
        Assert.Equal(new long[] { 2, 8, 64 }, first.shape);
        using var second = model.Forward(ids[.., 4..5], cache);
        using var third = model.Forward(ids[.., 5..6], cache);
        Assert.Equal(10, cache.Length);
        using var incremental = cat([first, second, third], 1);
        double diff = (incremental - full).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"{encoder}: cached decoding with a P-tuning prompt differs from the full forward by {diff}");
    }
}
