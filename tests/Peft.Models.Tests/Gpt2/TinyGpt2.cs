using Peft.Models.Gpt2;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Gpt2;

/// <summary>
/// The tiny GPT-2 of these tests (vocab 64, n_embd 32, 4 heads, 2 layers, n_inner 128, 64 positions, no dropout) and a
/// hand-built checkpoint in transformers' Conv1D layout written directly with the safetensors writer, so the transposes
/// are checked against tensors that never went through <c>HfCheckpoint.Save</c>.
/// </summary>
internal static class TinyGpt2
{
    /// <summary>The GPT-2 test classes share TorchSharp's global generator: they run one after another.</summary>
    public const string Collection = "Gpt2";

    public const int Vocab = 64;
    public const int Embd = 32;
    public const int Layers = 2;
    public const int Heads = 4;
    public const int Positions = 64;

    public static Gpt2Config Config(bool tie = true, string activation = "gelu_new") => new()
    {
        VocabSize = Vocab,
        NEmbd = Embd,
        NLayer = Layers,
        NHead = Heads,
        NPositions = Positions,
        LayerNormEpsilon = 1e-5,
        ActivationFunction = activation,
        ResidPdrop = 0,
        EmbdPdrop = 0,
        AttnPdrop = 0,
        TieWordEmbeddings = tie,
    };

    /// <summary>A model whose weights (layer norms included) depend only on <paramref name="seed"/>, in eval mode.</summary>
    public static Gpt2LMHeadModel Create(int seed, bool tie = true)
    {
        manual_seed(seed);
        var model = new Gpt2LMHeadModel(Config(tie));
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.Contains(".ln_", StringComparison.Ordinal) || name.Contains("ln_f", StringComparison.Ordinal))
                {
                    if (name.EndsWith(".weight", StringComparison.Ordinal)) p.uniform_(0.5, 1.5);
                    else p.uniform_(-0.2, 0.2);
                }
                else if (name.EndsWith(".bias", StringComparison.Ordinal) && !name.Contains(".default.", StringComparison.Ordinal))
                {
                    p.uniform_(-0.2, 0.2);
                }
            }
        }

        model.eval();
        return model;
    }

    /// <summary><see cref="Create"/> plus LoRA rank 8, alpha 16 on PEFT's default target (c_attn), adapter "default".</summary>
    public static Gpt2LMHeadModel CreateWithLoRA(int seed, bool tie = true) => WithLoRA(Create(seed, tie));

    /// <summary>Adds LoRA rank 8, alpha 16 on PEFT's default target (c_attn), adapter "default".</summary>
    public static Gpt2LMHeadModel WithLoRA(Gpt2LMHeadModel model)
    {
        model.ApplyTargets(new PeftTargets(Gpt2Targets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        return model;
    }

    /// <summary>
    /// Random GPT-2 tensors as transformers stores them (names without <c>transformer.</c>, Conv1D weights [in, out]),
    /// float32, depending only on <paramref name="seed"/>.
    /// </summary>
    public static Dictionary<string, Tensor> RawConv1DTensors(int seed)
    {
        var generator = new TorchSharp.torch.Generator((ulong)seed);
        Tensor R(params long[] shape) => randn(shape, generator: generator) * 0.3f;
        Tensor Near1(long n) => ones(n) + randn(new[] { n }, generator: generator) * 0.1f;
        var raw = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["wte.weight"] = R(Vocab, Embd),
            ["wpe.weight"] = R(Positions, Embd),
        };
        for (int i = 0; i < Layers; i++)
        {
            string p = $"h.{i}.";
            raw[p + "ln_1.weight"] = Near1(Embd);
            raw[p + "ln_1.bias"] = R(Embd);
            raw[p + "attn.c_attn.weight"] = R(Embd, 3 * Embd);
            raw[p + "attn.c_attn.bias"] = R(3 * Embd);
            raw[p + "attn.c_proj.weight"] = R(Embd, Embd);
            raw[p + "attn.c_proj.bias"] = R(Embd);
            raw[p + "ln_2.weight"] = Near1(Embd);
            raw[p + "ln_2.bias"] = R(Embd);
            raw[p + "mlp.c_fc.weight"] = R(Embd, 4 * Embd);
            raw[p + "mlp.c_fc.bias"] = R(4 * Embd);
            raw[p + "mlp.c_proj.weight"] = R(4 * Embd, Embd);
            raw[p + "mlp.c_proj.bias"] = R(Embd);
        }

        raw["ln_f.weight"] = Near1(Embd);
        raw["ln_f.bias"] = R(Embd);
        return raw;
    }

    /// <summary>
    /// Writes <paramref name="raw"/> as a Hugging Face GPT-2 directory: config.json (no <c>tie_word_embeddings</c>, as
    /// GPT-2's own) and one <c>model.safetensors</c>, with or without the <c>transformer.</c> prefix, optionally with the
    /// old non-persistent <c>attn.bias</c> / <c>attn.masked_bias</c> buffers, in <paramref name="dtype"/>.
    /// </summary>
    public static void WriteCheckpoint(string dir, Dictionary<string, Tensor> raw, bool prefix = true, bool buffers = false,
        ScalarType dtype = ScalarType.Float32, Func<string, string?>? edit = null)
    {
        Directory.CreateDirectory(dir);
        var config = Config().ToHf();
        config.Json.Remove("tie_word_embeddings");
        config.Save(Path.Combine(dir, "config.json"));
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (name, value) in raw)
        {
            var key = edit is null ? name : edit(name);
            if (key is null) continue;
            tensors.Add(new((prefix ? "transformer." : string.Empty) + key, value.to_type(dtype)));
        }

        if (buffers)
        {
            for (int i = 0; i < Layers; i++)
            {
                string p = (prefix ? "transformer." : string.Empty) + $"h.{i}.attn.";
                tensors.Add(new(p + "bias", ones(1, 1, Positions, Positions, dtype: ScalarType.Bool).tril().view(1, 1, Positions, Positions)));
                tensors.Add(new(p + "masked_bias", tensor(-1e4f)));
            }
        }

        SafetensorsFile.Write(Path.Combine(dir, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>
    /// GPT-2's forward written from the published formulas on the raw Conv1D tensors (<c>x @ W + b</c>), with nothing
    /// from the library: embeddings + positions, per block pre-norm causal attention and gelu_new MLP, ln_f, tied head.
    /// </summary>
    public static Tensor ReferenceLogits(Dictionary<string, Tensor> raw, Tensor ids)
    {
        using var scope = NewDisposeScope();
        long batch = ids.shape[0], time = ids.shape[1];
        const int d = Embd / Heads;
        Tensor Ln(Tensor x, string name)
        {
            var mean = x.mean(new long[] { -1 }, keepdim: true);
            var variance = (x - mean).pow(2).mean(new long[] { -1 }, keepdim: true);
            return (x - mean) / (variance + 1e-5).sqrt() * raw[name + ".weight"] + raw[name + ".bias"];
        }
        Tensor Conv1D(Tensor x, string name) => x.matmul(raw[name + ".weight"]) + raw[name + ".bias"];
        Tensor Heads_(Tensor t) => t.view(batch, time, Heads, d).transpose(1, 2);

        var x = raw["wte.weight"].index_select(0, ids.flatten()).view(batch, time, Embd) + raw["wpe.weight"].narrow(0, 0, time);
        var causal = ones(time, time, dtype: ScalarType.Bool).tril();
        for (int i = 0; i < Layers; i++)
        {
            string p = $"h.{i}.";
            var qkv = Conv1D(Ln(x, p + "ln_1"), p + "attn.c_attn");
            var q = Heads_(qkv.narrow(2, 0, Embd));
            var k = Heads_(qkv.narrow(2, Embd, Embd));
            var v = Heads_(qkv.narrow(2, 2 * Embd, Embd));
            var scores = q.matmul(k.transpose(-1, -2)) / Math.Sqrt(d);
            scores = scores.masked_fill(causal.logical_not(), float.NegativeInfinity);
            var attended = nn.functional.softmax(scores, -1).matmul(v).transpose(1, 2).contiguous().view(batch, time, Embd);
            x = x + Conv1D(attended, p + "attn.c_proj");
            var hidden = Conv1D(Ln(x, p + "ln_2"), p + "mlp.c_fc");
            var gelu = hidden * 0.5 * ((hidden + hidden.pow(3) * 0.044715) * Math.Sqrt(2 / Math.PI)).tanh().add(1.0);
            x = x + Conv1D(gelu, p + "mlp.c_proj");
        }

        x = Ln(x, "ln_f");
        return x.matmul(raw["wte.weight"].t()).MoveToOuterDisposeScope();
    }

    public static Tensor RandomIds(int seed, long batch, long time)
    {
        manual_seed(seed);
        return randint(0, Vocab, new[] { batch, time }, dtype: ScalarType.Int64);
    }

    public static float MaxAbsDiff(Tensor a, Tensor b)
    {
        using var diff = (a - b).abs().max();
        return diff.item<float>();
    }

    /// <summary>Same shape and the same bits in every element (float32).</summary>
    public static bool BitwiseEqual(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype) return false;
        var x = a.contiguous().flatten().data<float>().ToArray();
        var y = b.contiguous().flatten().data<float>().ToArray();
        return x.Select(BitConverter.SingleToInt32Bits).SequenceEqual(y.Select(BitConverter.SingleToInt32Bits));
    }

    public static string TempDir(string tag)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"peft-gpt2-{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
