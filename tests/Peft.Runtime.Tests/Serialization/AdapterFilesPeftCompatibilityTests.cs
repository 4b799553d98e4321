using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>Adapters as Hugging Face PEFT 0.20 writes them (hand-written configs, weights built with SafetensorsFile.Write) load.</summary>
public sealed class AdapterFilesPeftCompatibilityTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    // adapter_config.json of LoraConfig(r=4, lora_alpha=8, target_modules=r".*\.(q_proj|k_proj|v_proj)",
    // rank_pattern={"v_proj": 2}, alpha_pattern={"v_proj": 4}, lora_dropout=0.05, task_type="CAUSAL_LM").save_pretrained
    private const string PeftLoraConfig = """
        {
          "alora_invocation_tokens": null,
          "alpha_pattern": {
            "v_proj": 4
          },
          "arrow_config": null,
          "auto_mapping": null,
          "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M",
          "bias": "none",
          "corda_config": null,
          "ensure_weight_tying": false,
          "eva_config": null,
          "exclude_modules": null,
          "fan_in_fan_out": false,
          "inference_mode": true,
          "init_lora_weights": true,
          "layer_replication": null,
          "layers_pattern": null,
          "layers_to_transform": null,
          "loftq_config": {},
          "lora_alpha": 8,
          "lora_bias": false,
          "lora_dropout": 0.05,
          "megatron_config": null,
          "megatron_core": "megatron.core",
          "modules_to_save": null,
          "peft_type": "LORA",
          "peft_version": "0.20.0",
          "qalora_group_size": 16,
          "r": 4,
          "rank_pattern": {
            "v_proj": 2
          },
          "revision": null,
          "target_modules": ".*\\.(q_proj|k_proj|v_proj)",
          "target_parameters": null,
          "task_type": "CAUSAL_LM",
          "trainable_token_indices": null,
          "use_dora": false,
          "use_qalora": false,
          "use_rslora": false
        }
        """;

    private const string PeftLokrConfig = """
        {
          "alpha": 8,
          "alpha_pattern": {
            "wide": 4
          },
          "auto_mapping": null,
          "base_model_name_or_path": null,
          "decompose_both": false,
          "decompose_factor": -1,
          "exclude_modules": null,
          "inference_mode": true,
          "init_weights": true,
          "layers_pattern": null,
          "layers_to_transform": null,
          "module_dropout": 0.0,
          "modules_to_save": null,
          "peft_type": "LOKR",
          "peft_version": "0.20.0",
          "r": 4,
          "rank_dropout": 0.0,
          "rank_dropout_scale": false,
          "rank_pattern": {
            "wide": 2
          },
          "revision": null,
          "target_modules": [
            "wide",
            "small"
          ],
          "task_type": null,
          "use_effective_conv2d": false
        }
        """;

    private const string PeftPromptConfig = """
        {
          "auto_mapping": null,
          "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M",
          "inference_mode": true,
          "num_attention_heads": 9,
          "num_layers": 30,
          "num_transformer_submodules": 1,
          "num_virtual_tokens": 3,
          "peft_type": "PROMPT_TUNING",
          "peft_version": "0.20.0",
          "prompt_tuning_init": "TEXT",
          "prompt_tuning_init_text": "Classify the sentiment:",
          "revision": null,
          "task_type": "CAUSAL_LM",
          "token_dim": 8,
          "tokenizer_kwargs": null,
          "tokenizer_name_or_path": "HuggingFaceTB/SmolLM2-135M"
        }
        """;

    private string WritePeftAdapter(string config, IEnumerable<(string Key, long[] Shape)> tensors, Dictionary<string, Tensor> values)
    {
        string dir = _dir.File("peft_adapter");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, AdapterFiles.ConfigFileName), config);
        foreach (var (key, shape) in tensors) values[key] = torch.randn(shape);
        SafetensorsFile.Write(Path.Combine(dir, AdapterFiles.WeightsFileName), values.Reverse().ToList(),
            new Dictionary<string, string> { ["format"] = "pt" });
        return dir;
    }

    private static IEnumerable<(string, long[])> LoraTensors(IEnumerable<int> blocks)
    {
        foreach (int b in blocks)
        {
            foreach (var (name, r) in new[] { ("q_proj", 4L), ("k_proj", 4L), ("v_proj", 2L) })
            {
                yield return ($"base_model.model.blocks.{b}.attn.{name}.lora_A.weight", new[] { r, 16L });
                yield return ($"base_model.model.blocks.{b}.attn.{name}.lora_B.weight", new[] { 8L, r });
            }
        }
    }

    private static void AssertLoaded(nn.Module model, string adapterName, Dictionary<string, Tensor> values)
    {
        foreach (var (path, layer) in model.AdaptedLayers().Where(l => l.Layer.HasAdapter(adapterName)))
        {
            foreach (var (peftName, parameter) in layer.GetAdapter(adapterName).PeftTensors())
                AssertBitwiseEqual(values[AdapterFiles.KeyPrefix + path + "." + peftName], parameter);
        }
    }

    [Fact]
    public void A_PEFT_LoRA_adapter_with_regex_targets_and_patterns_loads_into_the_declared_adapter()
    {
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        string dir = WritePeftAdapter(PeftLoraConfig, LoraTensors(new[] { 0, 1 }), values);
        using var model = AfModel.Adapted();
        var result = AdapterFiles.Load(model, dir);
        Assert.Equal(12, result.LoadedTensors);
        Assert.Equal("CAUSAL_LM", result.Config.TaskType);
        Assert.Equal("HuggingFaceTB/SmolLM2-135M", result.Config.BaseModelNameOrPath);
        Assert.Equal(".*\\.(q_proj|k_proj|v_proj)", result.Config.TargetModulesRegex);
        Assert.True(result.Config.Raw.ContainsKey("megatron_core"));
        AssertLoaded(model, "default", values);
        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void A_PEFT_LoRA_adapter_loads_as_a_new_adapter_with_the_pattern_ranks_and_dropout()
    {
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        string dir = WritePeftAdapter(PeftLoraConfig, LoraTensors(new[] { 0, 1 }), values);
        using var model = AfModel.Adapted();
        AdapterFiles.Load(model, dir, "peft");
        foreach (var (path, layer) in model.AdaptedLayers())
        {
            var lora = (LoRAAdapter)layer.GetAdapter("peft");
            bool v = path.EndsWith("v_proj", StringComparison.Ordinal);
            Assert.Equal(v ? 2 : 4, lora.Rank);
            Assert.Equal(v ? 4.0 : 8.0, lora.Options.Alpha);
            Assert.Equal(0.05, lora.Options.Dropout);
        }
        AssertLoaded(model, "peft", values);
        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void Layers_to_transform_restricts_a_new_adapter_to_those_layers()
    {
        string config = PeftLoraConfig
            .Replace("\"layers_pattern\": null", "\"layers_pattern\": \"blocks\"", StringComparison.Ordinal)
            .Replace("\"layers_to_transform\": null", "\"layers_to_transform\": [1]", StringComparison.Ordinal)
            .Replace("\".*\\\\.(q_proj|k_proj|v_proj)\"", "[\"q_proj\", \"k_proj\", \"v_proj\"]", StringComparison.Ordinal);
        Assert.Contains("\"layers_to_transform\": [1]", config);
        Assert.Contains("[\"q_proj\", \"k_proj\", \"v_proj\"]", config);
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        string dir = WritePeftAdapter(config, LoraTensors(new[] { 1 }), values);
        using var model = AfModel.Adapted();
        var result = AdapterFiles.Load(model, dir, "late");
        Assert.Equal(6, result.LoadedTensors);
        Assert.Equal(new[] { "blocks.1.attn.q_proj", "blocks.1.attn.k_proj", "blocks.1.attn.v_proj" },
            model.AdaptedLayers().Where(l => l.Layer.HasAdapter("late")).Select(l => l.Path));
        AssertLoaded(model, "late", values);
        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void Exclude_modules_keeps_a_new_adapter_off_those_layers()
    {
        string config = PeftLoraConfig.Replace("\"exclude_modules\": null", "\"exclude_modules\": [\"blocks.0.attn.v_proj\"]", StringComparison.Ordinal);
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        string dir = WritePeftAdapter(config, LoraTensors(new[] { 0, 1 }).Where(t => !t.Item1.Contains("blocks.0.attn.v_proj", StringComparison.Ordinal)), values);
        using var model = AfModel.Adapted();
        AdapterFiles.Load(model, dir, "some");
        Assert.Equal(5, model.AdaptedLayers().Count(l => l.Layer.HasAdapter("some")));
        Assert.False(model.AdaptedLayers().Single(l => l.Path == "blocks.0.attn.v_proj").Layer.HasAdapter("some"));
        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void A_PEFT_LoKr_adapter_loads()
    {
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        string dir = WritePeftAdapter(PeftLokrConfig, new[]
        {
            ("base_model.model.small.lokr_w1", new long[] { 4, 4 }),
            ("base_model.model.small.lokr_w2", new long[] { 4, 4 }),
            ("base_model.model.wide.lokr_w1", new long[] { 8, 8 }),
            ("base_model.model.wide.lokr_w2_a", new long[] { 8, 2 }),
            ("base_model.model.wide.lokr_w2_b", new long[] { 2, 8 }),
        }, values);
        using var model = new AfKronModel();
        Assert.Equal(5, AdapterFiles.Load(model, dir).LoadedTensors);
        AssertLoaded(model, "default", values);
        using var other = new AfKronModel();
        AdapterFiles.Load(other, dir, "peft");
        AssertLoaded(other, "peft", values);
        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void A_PEFT_prompt_tuning_adapter_loads()
    {
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        string dir = WritePeftAdapter(PeftPromptConfig, new[] { ("prompt_embeddings", new long[] { 3, 8 }) }, values);
        using var model = new AfPromptModel();
        var result = AdapterFiles.Load(model, dir);
        Assert.Equal(1, result.LoadedTensors);
        Assert.Equal(3, result.Config.GetInt("num_virtual_tokens", 0));
        Assert.Equal(8, result.Config.GetInt("token_dim", 0));
        AssertBitwiseEqual(values["prompt_embeddings"], model.PromptEmbeddings().Single().Layer.GetPrompt("default").PromptEmbeddings);
        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void The_smallest_config_PEFT_loads_uses_PEFTs_defaults()
    {
        // {"peft_type", "target_modules"} only: r = 8 and lora_alpha = 8 by default.
        string dir = _dir.File("minimal");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, AdapterFiles.ConfigFileName), """{"peft_type": "LORA", "target_modules": ["q_proj"]}""");
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (int b in new[] { 0, 1 })
        {
            values[$"base_model.model.blocks.{b}.attn.q_proj.lora_A.weight"] = torch.randn(8, 16);
            values[$"base_model.model.blocks.{b}.attn.q_proj.lora_B.weight"] = torch.randn(8, 8);
        }
        SafetensorsFile.Write(Path.Combine(dir, AdapterFiles.WeightsFileName), values.ToList());
        using var model = AfModel.Adapted();
        AdapterFiles.Load(model, dir, "minimal");
        var layers = model.AdaptedLayers().Where(l => l.Layer.HasAdapter("minimal")).ToList();
        Assert.Equal(2, layers.Count);
        Assert.All(layers, l => Assert.Equal(1.0, ((LoRAAdapter)l.Layer.GetAdapter("minimal")).Scaling));
        AssertLoaded(model, "minimal", values);
        foreach (var t in values.Values) t.Dispose();
    }
}
