using Peft.Checkpoints;
using Peft.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Llama;

public sealed class LlamaModelTests
{
    [Fact]
    public void StateDictNamesAreTransformersLlamaKeys()
    {
        using var model = TinyLlama.Create(1);
        var names = model.state_dict().Keys.ToList();
        Assert.Contains("model.embed_tokens.weight", names);
        Assert.Contains("model.layers.1.self_attn.q_proj.weight", names);
        Assert.Contains("model.layers.1.self_attn.k_proj.weight", names);
        Assert.Contains("model.layers.0.self_attn.v_proj.weight", names);
        Assert.Contains("model.layers.0.self_attn.o_proj.weight", names);
        Assert.Contains("model.layers.0.mlp.gate_proj.weight", names);
        Assert.Contains("model.layers.0.mlp.up_proj.weight", names);
        Assert.Contains("model.layers.0.mlp.down_proj.weight", names);
        Assert.Contains("model.layers.0.input_layernorm.weight", names);
        Assert.Contains("model.layers.0.post_attention_layernorm.weight", names);
        Assert.Contains("model.norm.weight", names);
        Assert.Contains("lm_head.weight", names);
        Assert.Equal(3 + 2 * 9, names.Count); // embed_tokens, norm, lm_head, 9 per layer: the model declares no adapter
        Assert.Equal(new long[] { 16, 32 }, model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape); // 2 kv heads x 8
        Assert.Empty(model.AdapterNames());

        // PEFT's defaults for Llama are one line: LoRA on q_proj and v_proj; the base keys stay as they were.
        var adapted = model.ApplyTargets(new PeftTargets(LlamaTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        Assert.Equal(new[] { "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj" }, adapted.Order(StringComparer.Ordinal));
        var adapters = model.state_dict().Keys.Where(n => n.Contains(".default.", StringComparison.Ordinal)).ToList();
        Assert.Equal(8, adapters.Count);
        Assert.Contains("model.layers.0.self_attn.q_proj.default.lora_A.weight", adapters);
        Assert.Contains("model.layers.1.self_attn.v_proj.default.lora_B.weight", adapters);
        Assert.Equal(new long[] { 8, 32 }, model.state_dict()["model.layers.0.self_attn.q_proj.default.lora_A.weight"].shape);
        Assert.Equal(names, model.state_dict().Keys.Where(n => !n.Contains(".default.", StringComparison.Ordinal)));
        long trainable = model.TrainableParameters().Sum(p => p.numel());
        Assert.Equal(2 * (8 * (32 + 32) + 8 * (32 + 16)), trainable);

        using var tied = TinyLlama.Create(1, tie: true);
        Assert.DoesNotContain("lm_head.weight", tied.state_dict().Keys);
    }

    [Fact]
    public void ConfigRoundTripsThroughConfigJson()
    {
        var config = TinyLlama.Config();
        var hf = HfConfig.Parse(config.ToHf().ToJsonString());
        Assert.Equal("llama", hf.ModelType);
        Assert.Equal(config, LlamaConfig.FromHf(hf));
        hf.Json.Remove("num_key_value_heads");
        Assert.Equal(4, LlamaConfig.FromHf(hf).KeyValueHeads);
        hf.Json.Remove("hidden_size");
        Assert.Contains("hidden_size", Assert.Throws<CheckpointFormatException>(() => LlamaConfig.FromHf(hf)).Message);
    }

    [Fact]
    public void ChangingAFutureTokenLeavesEarlierLogitsUnchanged()
    {
        using var model = TinyLlama.Create(2);
        using var _ = no_grad();
        var ids = TinyLlama.RandomIds(3, 2, 10);
        var changed = ids.clone();
        changed[.., 6] = (changed[.., 6] + 1) % 64;
        var a = model.call(ids);
        var b = model.call(changed);
        Assert.True(TinyLlama.BitwiseEqual(a[.., ..6], b[.., ..6]), "logits before the changed position moved");
        Assert.False(a[.., 6..].allclose(b[.., 6..]), "logits at and after the changed position did not move");
    }

    [Fact]
    public void KvCacheDecodingMatchesTheFullForward()
    {
        using var model = TinyLlama.Create(4);
        using var _ = no_grad();
        var ids = TinyLlama.RandomIds(5, 2, 12);
        var full = model.call(ids);

        // Prompt of 5, then a chunk of 3 (masked against the cache), then one token at a time.
        using var cache = new KvCache(2);
        var parts = new List<Tensor>
        {
            model.Forward(ids[.., ..5], cache),
            model.Forward(ids[.., 5..8], cache),
        };
        for (int t = 8; t < 12; t++) parts.Add(model.Forward(ids[.., t..(t + 1)], cache));
        Assert.Equal(12, cache.Length);
        var incremental = cat(parts, 1);
        double maxDiff = (incremental - full).abs().max().item<float>();
        Assert.True(maxDiff <= 1e-5, $"max |cached - full| = {maxDiff}");
    }

    [Fact]
    public void RotaryEmbeddingMatchesTheClosedForm()
    {
        const int headDim = 8;
        const double theta = 10000.0;
        const int position = 7;
        var (cos, sin) = LlamaRotaryEmbedding.Tables(position, 1, headDim, theta, ScalarType.Float64, CPU);
        manual_seed(6);
        var x = randn(1, 1, 1, headDim, dtype: ScalarType.Float64);
        var rotated = LlamaRotaryEmbedding.Apply(x, cos, sin);
        var xs = x.flatten().data<double>().ToArray();
        var got = rotated.flatten().data<double>().ToArray();
        for (int i = 0; i < headDim / 2; i++)
        {
            // rotate_half pairs dimension i with i + d/2, rotated by angle pos / theta^(2i/d).
            double angle = position / Math.Pow(theta, 2.0 * i / headDim);
            double a = xs[i], b = xs[i + headDim / 2];
            Assert.Equal(a * Math.Cos(angle) - b * Math.Sin(angle), got[i], 6);
            Assert.Equal(b * Math.Cos(angle) + a * Math.Sin(angle), got[i + headDim / 2], 6);
        }

        // Position 0 is the identity.
        var (cos0, sin0) = LlamaRotaryEmbedding.Tables(0, 1, headDim, theta, ScalarType.Float64, CPU);
        Assert.True(LlamaRotaryEmbedding.Apply(x, cos0, sin0).allclose(x));
    }

    [Fact]
    public void GreedyGenerationIsDeterministicAndMatchesArgmaxOfTheFullForward()
    {
        using var model = TinyLlama.Create(7);
        var prompt = TinyLlama.Ids(1, 2, 3, 4);
        var a = model.Generate(prompt, 8);
        var b = model.Generate(prompt, 8);
        Assert.Equal(new long[] { 1, 12 }, a.shape);
        Assert.Equal(a.data<long>().ToArray(), b.data<long>().ToArray());
        Assert.Equal(prompt.data<long>().ToArray(), a[.., ..4].contiguous().data<long>().ToArray());

        // Without the cache: append the argmax of a full forward each step.
        using var _ = no_grad();
        var seq = prompt;
        for (int i = 0; i < 8; i++) seq = cat(new[] { seq, model.call(seq)[.., -1].argmax(-1).unsqueeze(1) }, 1);
        Assert.Equal(seq.data<long>().ToArray(), a.data<long>().ToArray());
    }

    [Fact]
    public void TopKOfOneEqualsGreedy()
    {
        using var model = TinyLlama.Create(8);
        var prompt = TinyLlama.RandomIds(9, 2, 3);
        var greedy = model.Generate(prompt, 10);
        var topK = model.Generate(prompt, 10, new GenerationOptions { Greedy = false, TopK = 1, Temperature = 0.7, Seed = 123 });
        Assert.Equal(greedy.data<long>().ToArray(), topK.data<long>().ToArray());
    }

    [Fact]
    public void SamplingIsReproducibleWithASeedAndVariesAcrossSeeds()
    {
        using var model = TinyLlama.Create(10);
        var prompt = TinyLlama.Ids(5, 6);
        var options = new GenerationOptions { Greedy = false, Temperature = 1.5, TopK = 40, TopP = 0.95, Seed = 42 };
        var a = model.Generate(prompt, 24, options).data<long>().ToArray();
        var b = model.Generate(prompt, 24, options).data<long>().ToArray();
        Assert.Equal(a, b);

        var others = Enumerable.Range(1, 4).Select(s => model.Generate(prompt, 24, options with { Seed = (ulong)(1000 + s) }).data<long>().ToArray()).ToList();
        Assert.Contains(others, o => !o.SequenceEqual(a));
        var greedy = model.Generate(prompt, 24).data<long>().ToArray();
        Assert.Contains(others.Append(a), o => !o.SequenceEqual(greedy));
    }

    [Fact]
    public void TopPKeepsOnlyTheNucleus()
    {
        // A tiny top_p keeps only the most likely token: sampling equals greedy whatever the seed.
        using var model = TinyLlama.Create(11);
        var prompt = TinyLlama.Ids(7, 8, 9);
        var greedy = model.Generate(prompt, 12).data<long>().ToArray();
        for (ulong seed = 0; seed < 3; seed++)
        {
            var nucleus = model.Generate(prompt, 12, new GenerationOptions { Greedy = false, TopP = 1e-6, Seed = seed }).data<long>().ToArray();
            Assert.Equal(greedy, nucleus);
        }
    }

    [Fact]
    public void EosStopsGeneration()
    {
        using var model = TinyLlama.Create(12);
        var prompt = TinyLlama.Ids(1, 2);
        var greedy = model.Generate(prompt, 10).data<long>().ToArray();
        long eos = greedy[3]; // the second generated token
        var stopped = model.Generate(prompt, 10, new GenerationOptions { EosTokenId = eos }).data<long>().ToArray();
        int firstEos = Array.IndexOf(greedy, eos, 2);
        Assert.Equal(greedy.Take(firstEos + 1), stopped);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void HfCheckpointRoundTripGivesIdenticalLogits(bool tie)
    {
        string dir = TinyLlama.TempDir("ckpt");
        try
        {
            using var source = TinyLlama.Create(13, tie);
            HfCheckpoint.Save(source, dir, source.Config.ToHf());
            if (tie)
            {
                using var written = HfCheckpoint.Open(dir);
                Assert.DoesNotContain("lm_head.weight", written.TensorNames);
            }

            manual_seed(999);
            using var loaded = LlamaForCausalLM.FromPretrained(dir);
            Assert.Equal(source.Config, loaded.Config);
            var ids = TinyLlama.RandomIds(14, 2, 9);
            using var _ = no_grad();
            var expected = source.call(ids);
            var actual = loaded.call(ids);
            Assert.True(TinyLlama.BitwiseEqual(expected, actual), "logits differ after the checkpoint round trip");

            using var fresh = TinyLlama.Create(15, tie);
            Assert.False(fresh.call(ids).allclose(expected), "a differently seeded model has the same logits");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
