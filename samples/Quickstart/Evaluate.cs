using TorchSharp;
using static TorchSharp.torch;

namespace Quickstart;

/// <summary>Batching and evaluation for the byte-level model.</summary>
internal static class Evaluate
{
    /// <summary>Random windows of <paramref name="length"/> + 1 bytes: input = first length, target = shifted by one.</summary>
    public static (Tensor Input, Tensor Target) Batch(byte[] corpus, int batch, int length, Random random)
    {
        var input = new long[batch * length];
        var target = new long[batch * length];
        for (int b = 0; b < batch; b++)
        {
            int start = random.Next(0, corpus.Length - length - 1);
            for (int t = 0; t < length; t++)
            {
                input[b * length + t] = corpus[start + t];
                target[b * length + t] = corpus[start + t + 1];
            }
        }
        return (tensor(input, new long[] { batch, length }), tensor(target, new long[] { batch, length }));
    }

    /// <summary>Logits in eval mode without gradient tracking.</summary>
    public static Tensor Logits(TinyGpt model, Tensor input)
    {
        using var _ = no_grad();
        return model.call(input);
    }

    /// <summary>exp(mean cross-entropy) over consecutive non-overlapping windows covering the whole text.</summary>
    public static double Perplexity(TinyGpt model, byte[] text, int length, Device device)
    {
        model.eval();
        using var _ = no_grad();
        double totalLoss = 0;
        long totalTokens = 0;
        const int windowsPerBatch = 32;
        int windows = (text.Length - 1) / length;
        for (int first = 0; first < windows; first += windowsPerBatch)
        {
            using var scope = NewDisposeScope();
            int count = Math.Min(windowsPerBatch, windows - first);
            var input = new long[count * length];
            var target = new long[count * length];
            for (int w = 0; w < count; w++)
            {
                int start = (first + w) * length;
                for (int t = 0; t < length; t++)
                {
                    input[w * length + t] = text[start + t];
                    target[w * length + t] = text[start + t + 1];
                }
            }
            var x = tensor(input, new long[] { count, length }).to(device);
            var y = tensor(target, new long[] { count, length }).to(device);
            var logits = model.call(x);
            var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), y.view(-1), reduction: nn.Reduction.Sum);
            totalLoss += loss.item<float>();
            totalTokens += count * length;
        }
        return Math.Exp(totalLoss / totalTokens);
    }
}
