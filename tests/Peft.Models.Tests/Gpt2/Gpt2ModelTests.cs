using Peft.Checkpoints;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Gpt2;

[Collection(TinyGpt2.Collection)]
public sealed class Gpt2ModelTests
{
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Fact]
    public void StateDictNamesAreTransformersGpt2LMHeadModelKeys()
    {
        using var model = TinyGpt2.Create(1);
        var state = model.state_dict();
        var names = state.Keys.ToList();
        var expected = new List<string> { "transformer.wte.weight", "transformer.wpe.weight" };
        for (int i = 0; i < TinyGpt2.Layers; i++)
        {
            foreach (var suffix in new[] { "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
                "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias" })
            {
                expected.Add($"transformer.h.{i}.{suffix}");
            }
        }
        expected.Add("transformer.ln_f.weight");
        expected.Add("transformer.ln_f.bias");
        Assert.Equal(expected, names);   // transformers' order too; tied: no lm_head.weight

        // Linear layout inside the model: [out, in].
        Assert.Equal(new long[] { 96, 32 }, state["transformer.h.0.attn.c_attn.weight"].shape);
        Assert.Equal(new long[] { 128, 32 }, state["transformer.h.0.mlp.c_fc.weight"].shape);

        // The model declares no adapter; PEFT's default target for GPT-2 (c_attn) is one line.
        Assert.Empty(model.AdapterNames());
        model.ApplyTargets(new PeftTargets(Gpt2Targets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        state = model.state_dict();
        Assert.Equal(names, state.Keys.Where(n => !n.Contains(".default.", StringComparison.Ordinal)));
        var adapters = state.Keys.Where(n => n.Contains(".default.", StringComparison.Ordinal)).ToList();
        Assert.Equal(
            new[] { "transformer.h.0.attn.c_attn.default.lora_A.weight", "transformer.h.0.attn.c_attn.default.lora_B.weight",
                    "transformer.h.1.attn.c_attn.default.lora_A.weight", "transformer.h.1.attn.c_attn.default.lora_B.weight" },
            adapters);
        Assert.Equal(new long[] { 8, 32 }, state["transformer.h.0.attn.c_attn.default.lora_A.weight"].shape);
        Assert.Equal(new long[] { 96, 8 }, state["transformer.h.0.attn.c_attn.default.lora_B.weight"].shape);
        Assert.Equal(2 * 8 * (32 + 96), model.TrainableParameters().Sum(p => p.numel()));

        using var untied = TinyGpt2.Create(1, tie: false);
        Assert.Contains("lm_head.weight", untied.state_dict().Keys);
    }

    [Fact]
    public void ConfigRoundTripsAndRefusesWhatItDoesNotImplement()
    {
        var config = TinyGpt2.Config();
        var hf = HfConfig.Parse(config.ToHf().ToJsonString());
        Assert.Equal("gpt2", hf.ModelType);
        Assert.Equal(config, Gpt2Config.FromHf(hf));

        // GPT-2's own config.json has no tie_word_embeddings: transformers ties.
        hf.Json.Remove("tie_word_embeddings");
        hf.Json.Remove("n_inner");
        var read = Gpt2Config.FromHf(hf);
        Assert.True(read.TieWordEmbeddings);
        Assert.Equal(128, read.InnerSize);

        var bad = HfConfig.Parse(config.ToHf().ToJsonString());
        bad.Json["activation_function"] = "gelu_accurate";
        Assert.Contains("gelu_accurate", Assert.Throws<CheckpointFormatException>(() => Gpt2Config.FromHf(bad)).Message);
        bad = HfConfig.Parse(config.ToHf().ToJsonString());
        bad.Json["model_type"] = "llama";
        Assert.Contains("llama", Assert.Throws<CheckpointFormatException>(() => Gpt2Config.FromHf(bad)).Message);
        bad = HfConfig.Parse(config.ToHf().ToJsonString());
        bad.Json["scale_attn_by_inverse_layer_idx"] = true;
        Assert.Contains("scale_attn_by_inverse_layer_idx", Assert.Throws<CheckpointFormatException>(() => Gpt2Config.FromHf(bad)).Message);
        bad = HfConfig.Parse(config.ToHf().ToJsonString());
        bad.Json["n_head"] = 5;
        Assert.Contains("n_head", Assert.Throws<CheckpointFormatException>(() => Gpt2Config.FromHf(bad)).Message);
    }

    [Fact]
    public void ThePublishedGpt2ConfigReadsAsThe124MModel()
    {
        // openai-community/gpt2's config.json as published (task_specific_params shortened).
        const string json = """
            {
              "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1, "bos_token_id": 50256,
              "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
              "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
              "resid_pdrop": 0.1, "summary_activation": null, "summary_first_dropout": 0.1, "summary_proj_to_labels": true,
              "summary_type": "cls_index", "summary_use_proj": true,
              "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}}, "vocab_size": 50257
            }
            """;
        var config = Gpt2Config.FromHf(HfConfig.Parse(json));
        Assert.Equal(new Gpt2Config(), config);   // transformers' GPT2Config defaults are the 124M model
        Assert.Equal((768, 12, 12, 1024, 3072, 64), (config.NEmbd, config.NHead, config.NLayer, config.NPositions, config.InnerSize, config.HeadDim));
        Assert.True(config.TieWordEmbeddings);
        Assert.Equal("gelu_new", config.ActivationFunction);
    }

    [Fact]
    public void ActivationsFollowTransformersFormulas()
    {
        using var x = linspace(-4, 4, 33);
        var expected = x * 0.5 * ((x + x.pow(3) * 0.044715) * Math.Sqrt(2 / Math.PI)).tanh().add(1.0);
        Assert.True(TinyGpt2.MaxAbsDiff(Gpt2Activation.Apply("gelu_new", x), expected) < 1e-6);
        Assert.True(TinyGpt2.MaxAbsDiff(Gpt2Activation.Apply("gelu_pytorch_tanh", x), expected) < 1e-6);
        var exact = x * 0.5 * (x / Math.Sqrt(2)).erf().add(1.0);
        Assert.True(TinyGpt2.MaxAbsDiff(Gpt2Activation.Apply("gelu", x), exact) < 1e-6);
        Assert.True(TinyGpt2.MaxAbsDiff(Gpt2Activation.Apply("quick_gelu", x), x * (x * 1.702).sigmoid()) < 1e-6);
        Assert.True(TinyGpt2.MaxAbsDiff(Gpt2Activation.Apply("relu", x), x.clamp_min(0)) == 0);
    }

    [Fact]
    public void ChangingAFutureTokenLeavesEarlierLogitsUnchanged()
    {
        using var model = TinyGpt2.Create(2);
        using var _ = no_grad();
        var ids = TinyGpt2.RandomIds(3, 1, 10);
        var changed = ids.clone();
        changed[0, 6] = (ids[0, 6].item<long>() + 1) % TinyGpt2.Vocab;
        var a = model.call(ids);
        var b = model.call(changed);
        Assert.True(TinyGpt2.BitwiseEqual(a[.., ..6], b[.., ..6]));
        Assert.False(a[.., 6..].allclose(b[.., 6..]));
    }

    [Fact]
    public void KvCacheGivesTheFullForwardsLogits()
    {
        using var model = TinyGpt2.Create(4);
        using var _ = no_grad();
        var ids = TinyGpt2.RandomIds(5, 2, 12);
        var full = model.call(ids);
        using var cache = new KvCache(TinyGpt2.Layers);
        var parts = new List<Tensor>
        {
            model.Forward(ids[.., ..5], cache),        // prompt
            model.Forward(ids[.., 5..8], cache),       // a chunk of 3 after the cache (bottom-right causal mask)
        };
        for (int t = 8; t < 12; t++) parts.Add(model.Forward(ids[.., t..(t + 1)], cache));
        Assert.Equal(12, cache.Length);
        var cached = cat(parts, 1);
        Assert.True(TinyGpt2.MaxAbsDiff(full, cached) < 1e-5, $"max diff {TinyGpt2.MaxAbsDiff(full, cached)}");
        Assert.Throws<ArgumentException>(() => model.Forward(ones(2, TinyGpt2.Positions - 11, dtype: ScalarType.Int64), cache));
    }

    [Fact]
    public void GreedyGenerationIsTheArgmaxOfFullForwardsAndSamplingIsSeeded()
    {
        using var model = TinyGpt2.Create(6);
        var prompt = TinyGpt2.RandomIds(7, 2, 4);
        var greedy = model.Generate(prompt, 8);
        Assert.Equal(new long[] { 2, 12 }, greedy.shape);

        var expected = prompt.clone();
        using (no_grad())
        {
            for (int i = 0; i < 8; i++)
            {
                var next = model.call(expected).select(1, -1).argmax(-1).unsqueeze(1);
                expected = cat(new[] { expected, next }, 1);
            }
        }
        Assert.True(Same(expected, greedy));

        var sampling = new GenerationOptions { Greedy = false, Temperature = 1.5, TopK = 20, TopP = 0.95, Seed = 11 };
        var s1 = model.Generate(prompt, 8, sampling);
        var s2 = model.Generate(prompt, 8, sampling);
        Assert.True(Same(s1, s2));
        Assert.True(Same(model.Generate(prompt, 8, new GenerationOptions { Greedy = false, TopK = 1, Seed = 3 }), greedy));
        Assert.True(Same(model.Generate(prompt, 8, new GenerationOptions { Greedy = false, TopP = 1e-6, Seed = 4 }), greedy));
        var differs = Enumerable.Range(12, 6).Any(seed => !Same(model.Generate(prompt, 8, sampling with { Seed = (ulong)seed }), s1));
        Assert.True(differs, "sampling gave the same tokens under seven seeds");

        long eos = greedy[0, 4].item<long>();
        var stopped = model.Generate(prompt[..1], 8, new GenerationOptions { EosTokenId = eos });
        Assert.Equal(5, stopped.shape[1]);
        Assert.False(model.training);
    }
}
