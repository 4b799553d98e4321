using Peft.Models.Bert;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Bert;

/// <summary>The tiny BERT used by these tests: hidden 32, 2 layers, 4 heads, intermediate 48, vocab 64, 2 labels.</summary>
internal static class TinyBert
{
    public const int Vocab = 64;

    /// <summary>The BERT test classes share TorchSharp's global generator (seeded weights, dropout): run them one at a time.</summary>
    public const string Collection = "Bert";

    public static BertConfig Config(double dropout = 0.0) => new()
    {
        VocabSize = Vocab,
        HiddenSize = 32,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        IntermediateSize = 48,
        MaxPositionEmbeddings = 32,
        TypeVocabSize = 2,
        HiddenDropoutProb = dropout,
        AttentionProbsDropoutProb = dropout,
        NumLabels = 2,
    };

    /// <summary>A model whose weights (layer norms included) depend only on <paramref name="seed"/>, in eval mode.</summary>
    public static BertForSequenceClassification Create(int seed, double dropout = 0.0)
    {
        manual_seed(seed);
        var model = new BertForSequenceClassification(Config(dropout));
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)) p.uniform_(0.5, 1.5);
                else if (name.EndsWith("LayerNorm.bias", StringComparison.Ordinal)) p.uniform_(-0.2, 0.2);
            }
        }

        model.eval();
        return model;
    }

    /// <summary><see cref="Create"/> plus LoRA rank 8, alpha 16 on PEFT's default targets (query, value), adapter "default".</summary>
    public static BertForSequenceClassification CreateWithLoRA(int seed, double dropout = 0.0)
    {
        var model = Create(seed, dropout);
        model.ApplyTargets(new PeftTargets(BertTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        return model;
    }

    public static Tensor RandomIds(int seed, long batch, long time)
    {
        manual_seed(seed);
        return randint(1, Vocab, new[] { batch, time }, dtype: ScalarType.Int64);
    }

    /// <summary>Same shape and the same bits in every element.</summary>
    public static bool BitwiseEqual(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype) return false;
        var x = a.contiguous().flatten().data<float>().ToArray();
        var y = b.contiguous().flatten().data<float>().ToArray();
        return x.Select(BitConverter.SingleToInt32Bits).SequenceEqual(y.Select(BitConverter.SingleToInt32Bits));
    }

    public static string TempDir(string tag)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"peft-bert-{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
