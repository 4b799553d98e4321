using Peft.Models.Llama;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Llama;

/// <summary>The tiny Llama used by these tests: hidden 32, 2 layers, 4 query heads sharing 2 key/value heads, vocab 64.</summary>
internal static class TinyLlama
{
    public static LlamaConfig Config(bool tie = false) => new()
    {
        VocabSize = 64,
        HiddenSize = 32,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        RmsNormEps = 1e-6,
        RopeTheta = 10000.0,
        MaxPositionEmbeddings = 128,
        TieWordEmbeddings = tie,
    };

    /// <summary>A model whose weights (norms included) depend only on <paramref name="seed"/>, in eval mode.</summary>
    public static LlamaForCausalLM Create(int seed, bool tie = false)
    {
        manual_seed(seed);
        var model = new LlamaForCausalLM(Config(tie));
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.uniform_(0.5, 1.5);
            }
        }

        model.eval();
        return model;
    }

    /// <summary><see cref="Create"/> plus LoRA rank 8, alpha 16 on PEFT's default targets (q_proj, v_proj), adapter "default".</summary>
    public static LlamaForCausalLM CreateWithLoRA(int seed, bool tie = false)
    {
        var model = Create(seed, tie);
        model.ApplyTargets(new PeftTargets(LlamaTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        return model;
    }

    public static Tensor Ids(params long[] ids) => tensor(ids, dtype: ScalarType.Int64).unsqueeze(0);

    public static Tensor RandomIds(int seed, long batch, long time)
    {
        manual_seed(seed);
        return randint(0, 64, new[] { batch, time }, dtype: ScalarType.Int64);
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
        string dir = Path.Combine(Path.GetTempPath(), $"peft-llama-{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
