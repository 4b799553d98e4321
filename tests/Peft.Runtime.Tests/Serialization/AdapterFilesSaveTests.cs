using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>What AdapterFiles.Save writes: PEFT's file names, keys, shapes, values and adapter_config.json.</summary>
public sealed class AdapterFilesSaveTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly string[] Layers =
    {
        "blocks.0.attn.k_proj", "blocks.0.attn.q_proj", "blocks.0.attn.v_proj",
        "blocks.1.attn.k_proj", "blocks.1.attn.q_proj", "blocks.1.attn.v_proj",
    };

    [Fact]
    public void LoRA_directory_holds_exactly_the_two_PEFT_files_with_pt_metadata()
    {
        using var model = AfModel.Adapted();
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);

        Assert.Equal(new[] { "adapter_config.json", "adapter_model.safetensors" },
            Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal));
        var metadata = Header(Path.Combine(dir, AdapterFiles.WeightsFileName))["__metadata__"]!.AsObject();
        Assert.Equal("{\"format\":\"pt\"}", metadata.ToJsonString());
        using var reader = SafetensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsFileName));
        Assert.Equal("pt", Assert.Single(reader.Metadata).Value);
    }

    [Fact]
    public void LoRA_keys_shapes_and_values_follow_PEFT_for_nested_modules()
    {
        using var model = AfModel.Adapted();
        RandomizeAdapters(model);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);

        var expectedKeys = Layers.SelectMany(l => new[] { $"base_model.model.{l}.lora_A.weight", $"base_model.model.{l}.lora_B.weight" })
            .OrderBy(k => k, StringComparer.Ordinal).ToArray();
        Assert.Equal(expectedKeys, Keys(weights));

        var layers = model.AdaptedLayers().ToDictionary(l => l.Path, l => l.Layer);
        foreach (var path in Layers)
        {
            var lora = (LoRAAdapter)layers[path].GetAdapter("default");
            int r = path.EndsWith("v_proj", StringComparison.Ordinal) ? 2 : 4;
            Assert.Equal(new long[] { r, 16 }, Shape(weights, $"base_model.model.{path}.lora_A.weight"));
            Assert.Equal(new long[] { 8, r }, Shape(weights, $"base_model.model.{path}.lora_B.weight"));
            using var a = Read(dir, $"base_model.model.{path}.lora_A.weight");
            using var b = Read(dir, $"base_model.model.{path}.lora_B.weight");
            AssertBitwiseEqual(lora.A, a);
            AssertBitwiseEqual(lora.B, b);
        }
    }

    [Fact]
    public void LoRA_config_is_sorted_two_space_indented_and_holds_PEFT_fields()
    {
        using var model = AfModel.Adapted();
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { TaskType = "CAUSAL_LM", BaseModelNameOrPath = "org/tiny", Revision = "main" });
        string text = File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigFileName));

        // Layout: top-level keys indented by exactly two spaces, in ordinal order; nested entries by four.
        var lines = text.Split('\n');
        Assert.Equal("{", lines[0]);
        var topKeys = lines.Where(l => l.StartsWith("  \"", StringComparison.Ordinal)).Select(l => l[3..l.IndexOf('"', 3)]).ToList();
        Assert.Equal(topKeys.OrderBy(k => k, StringComparer.Ordinal), topKeys);
        Assert.Contains("  \"r\": 4,", lines);
        Assert.Contains("    \"blocks.0.attn.v_proj\": 2,", lines);
        Assert.DoesNotContain('\t', text);
        Assert.DoesNotContain('\r', text);

        var json = JsonNode.Parse(text)!.AsObject();
        Assert.Equal(topKeys.Count, json.Count);
        Assert.Equal("LORA", (string?)json["peft_type"]);
        Assert.Equal(4, (int)json["r"]!);
        Assert.Equal(8.0, (double)json["lora_alpha"]!);
        Assert.Equal(0.0, (double)json["lora_dropout"]!);
        Assert.Equal(new[] { "k_proj", "q_proj", "v_proj" }, json["target_modules"]!.AsArray().Select(n => (string?)n));
        Assert.False((bool)json["use_rslora"]!);
        Assert.True((bool)json["init_lora_weights"]!);
        Assert.False((bool)json["use_dora"]!);
        Assert.False((bool)json["fan_in_fan_out"]!);
        Assert.Equal("none", (string?)json["bias"]);
        Assert.True((bool)json["inference_mode"]!);
        Assert.Equal("CAUSAL_LM", (string?)json["task_type"]);
        Assert.Equal("org/tiny", (string?)json["base_model_name_or_path"]);
        Assert.Equal("main", (string?)json["revision"]);
        Assert.Equal(AdapterFiles.PeftVersion, (string?)json["peft_version"]);
        Assert.Equal("{\"blocks.0.attn.v_proj\":2,\"blocks.1.attn.v_proj\":2}", json["rank_pattern"]!.ToJsonString());
        Assert.Equal("{\"blocks.0.attn.v_proj\":4,\"blocks.1.attn.v_proj\":4}", json["alpha_pattern"]!.ToJsonString());

        // The reader of this library sees the same values.
        var config = AdapterConfig.Read(Path.Combine(dir, AdapterFiles.ConfigFileName));
        var r = config.GetInt("r", 8);
        var alpha = config.GetDouble("lora_alpha", 8);
        Assert.Equal(2, config.RankFor("blocks.1.attn.v_proj", r));
        Assert.Equal(4, config.RankFor("blocks.1.attn.q_proj", r));
        Assert.Equal(4.0, config.AlphaFor("blocks.0.attn.v_proj", alpha));
        Assert.Equal(8.0, config.AlphaFor("blocks.0.attn.k_proj", alpha));
    }

    [Fact]
    public void Metadata_fields_are_null_without_options()
    {
        using var model = AfModel.Adapted();
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        var json = Config(dir);
        Assert.True(json.ContainsKey("task_type"));
        Assert.Null(json["task_type"]);
        Assert.Null(json["base_model_name_or_path"]);
    }

    [Fact]
    public void Target_modules_use_full_paths_where_the_short_name_also_names_a_plain_module()
    {
        // extra.k_proj is a plain Linear: "k_proj" would make PEFT adapt it too, so the k_proj layers are listed by path.
        using var model = new AfModel(() => new AfAttention(), new AfKOnly());
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        var targets = Config(dir)["target_modules"]!.AsArray().Select(n => (string?)n).ToArray();
        Assert.Equal(new[] { "blocks.0.attn.k_proj", "blocks.1.attn.k_proj", "q_proj", "v_proj" }, targets);

        var config = AdapterConfig.Read(Path.Combine(dir, AdapterFiles.ConfigFileName));
        Assert.False(config.Targets("extra.k_proj"));
        Assert.All(Layers, l => Assert.True(config.Targets(l), l));
    }

    [Fact]
    public void Target_modules_use_full_paths_when_plain_layers_share_every_name()
    {
        using var model = new AfModel(() => new AfAttention(), new AfPlainAttention());
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        var targets = Config(dir)["target_modules"]!.AsArray().Select(n => (string?)n).ToArray();
        Assert.Equal(Layers, targets);
    }

    [Fact]
    public void Target_modules_become_an_exact_regex_when_even_a_full_path_would_select_another_module()
    {
        // extra.blocks.0.attn.q_proj ends with ".blocks.0.attn.q_proj": no list entry selects only the adapted layers.
        using var model = new AfModel(() => new AfAttention(), AfModel.Plain());
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        var targets = Config(dir)["target_modules"]!;
        Assert.Equal(JsonValueKind.String, targets.GetValueKind());

        var config = AdapterConfig.Read(Path.Combine(dir, AdapterFiles.ConfigFileName));
        Assert.All(Layers, l => Assert.True(config.Targets(l), l));
        Assert.All(Layers, l => Assert.False(config.Targets("extra." + l), "extra." + l));
        Assert.False(config.Targets("blocks.0.attn.o_proj"));
    }

    [Fact]
    public void Gaussian_rslora_and_dropout_settings_are_written()
    {
        using var model = new AfGaussianModel();
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        var json = Config(dir);
        Assert.Equal("gaussian", (string?)json["init_lora_weights"]);
        Assert.True((bool)json["use_rslora"]!);
        Assert.Equal(0.25, (double)json["lora_dropout"]!);
        Assert.Equal(2, (int)json["r"]!);
        Assert.Equal(4.0, (double)json["lora_alpha"]!);
        Assert.Equal(new[] { "fc" }, json["target_modules"]!.AsArray().Select(n => (string?)n));
        Assert.Equal("{}", json["rank_pattern"]!.ToJsonString());
        Assert.Equal("{}", json["alpha_pattern"]!.ToJsonString());
        Assert.Equal(new[] { "base_model.model.fc.lora_A.weight", "base_model.model.fc.lora_B.weight" },
            Keys(Path.Combine(dir, AdapterFiles.WeightsFileName)));
    }

    [Fact]
    public void Kronecker_keys_shapes_values_and_config()
    {
        using var model = new AfKronModel();
        RandomizeAdapters(model);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);

        Assert.Equal(new[]
        {
            "base_model.model.small.lokr_w1", "base_model.model.small.lokr_w2",
            "base_model.model.wide.lokr_w1", "base_model.model.wide.lokr_w2_a", "base_model.model.wide.lokr_w2_b",
        }, Keys(weights));
        Assert.Equal(new long[] { 4, 4 }, Shape(weights, "base_model.model.small.lokr_w1"));
        Assert.Equal(new long[] { 4, 4 }, Shape(weights, "base_model.model.small.lokr_w2"));
        Assert.Equal(new long[] { 8, 8 }, Shape(weights, "base_model.model.wide.lokr_w1"));
        Assert.Equal(new long[] { 8, 2 }, Shape(weights, "base_model.model.wide.lokr_w2_a"));
        Assert.Equal(new long[] { 2, 8 }, Shape(weights, "base_model.model.wide.lokr_w2_b"));
        var wide = (KroneckerAdapter)model.AdaptedLayers().Single(l => l.Path == "wide").Layer.GetAdapter("default");
        using (var w1 = Read(dir, "base_model.model.wide.lokr_w1")) AssertBitwiseEqual(wide.W1!, w1);
        foreach (var (name, parameter) in wide.PeftTensors())
        {
            using var stored = Read(dir, "base_model.model.wide." + name);
            AssertBitwiseEqual(parameter, stored);
        }

        var json = Config(dir);
        Assert.Equal("LOKR", (string?)json["peft_type"]);
        Assert.Equal(2, (int)json["r"]!);               // 2 and 4 tie: the smaller is the default, the other a pattern
        Assert.Equal(4.0, (double)json["alpha"]!);
        Assert.False(json.ContainsKey("lora_alpha"));
        Assert.Equal(-1, (int)json["decompose_factor"]!);
        Assert.False((bool)json["decompose_both"]!);
        Assert.Equal("{\"small\":4}", json["rank_pattern"]!.ToJsonString());
        Assert.Equal("{\"small\":8}", json["alpha_pattern"]!.ToJsonString());
        Assert.Equal(new[] { "small", "wide" }, json["target_modules"]!.AsArray().Select(n => (string?)n));
        Assert.True((bool)json["inference_mode"]!);
    }

    [Fact]
    public void Kronecker_decompose_both_writes_four_low_rank_factors()
    {
        using var model = new AfKronBothModel();
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);
        Assert.Equal(new[]
        {
            "base_model.model.proj.lokr_w1_a", "base_model.model.proj.lokr_w1_b",
            "base_model.model.proj.lokr_w2_a", "base_model.model.proj.lokr_w2_b",
        }, Keys(weights));
        Assert.Equal(new long[] { 8, 2 }, Shape(weights, "base_model.model.proj.lokr_w1_a"));
        Assert.Equal(new long[] { 2, 8 }, Shape(weights, "base_model.model.proj.lokr_w1_b"));
        Assert.True((bool)Config(dir)["decompose_both"]!);
    }

    [Fact]
    public void Kronecker_factor_is_written_as_decompose_factor()
    {
        using var model = new AfKronFactorModel();
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);
        Assert.Equal(4, (int)Config(dir)["decompose_factor"]!);
        Assert.Equal(new long[] { 4, 4 }, Shape(weights, "base_model.model.proj.lokr_w1"));
        Assert.Equal(new long[] { 8, 4 }, Shape(weights, "base_model.model.proj.lokr_w2"));
    }

    [Fact]
    public void Prompt_tuning_saves_one_prompt_embeddings_tensor_and_its_config()
    {
        using var model = new AfPromptModel();
        RandomizeAdapters(model);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { TaskType = "SEQ_CLS" });
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);

        Assert.Equal(new[] { "prompt_embeddings" }, Keys(weights));
        Assert.Equal(new long[] { 3, 8 }, Shape(weights, "prompt_embeddings"));
        var prompt = model.PromptEmbeddings().Single().Layer.GetPrompt("default");
        using (var stored = Read(dir, "prompt_embeddings")) AssertBitwiseEqual(prompt.PromptEmbeddings, stored);

        var json = Config(dir);
        Assert.Equal("PROMPT_TUNING", (string?)json["peft_type"]);
        Assert.Equal(3, (int)json["num_virtual_tokens"]!);
        Assert.Equal(8, (int)json["token_dim"]!);
        Assert.Equal(1, (int)json["num_transformer_submodules"]!);
        Assert.Equal("RANDOM", (string?)json["prompt_tuning_init"]);
        Assert.Null(json["prompt_tuning_init_text"]);
        Assert.Equal("SEQ_CLS", (string?)json["task_type"]);
        Assert.True((bool)json["inference_mode"]!);
        Assert.False(json.ContainsKey("target_modules"));
    }

    [Fact]
    public void Prompt_text_init_is_TEXT_with_the_tokenizer_PEFT_requires()
    {
        using var model = new AfPromptTextModel();
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { BaseModelNameOrPath = "org/tiny" });
        var json = Config(dir);
        Assert.Equal("TEXT", (string?)json["prompt_tuning_init"]);
        Assert.Equal("classify this", (string?)json["prompt_tuning_init_text"]);
        Assert.Equal("org/tiny", (string?)json["tokenizer_name_or_path"]);

        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { BaseModelNameOrPath = "org/tiny", TokenizerNameOrPath = "org/tok" });
        Assert.Equal("org/tok", (string?)Config(dir)["tokenizer_name_or_path"]);
    }

    [Fact]
    public void Prompt_text_init_without_a_tokenizer_is_recorded_as_RANDOM_because_PEFT_rejects_TEXT_without_one()
    {
        using var model = new AfPromptTextModel();
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        var json = Config(dir);
        Assert.Equal("RANDOM", (string?)json["prompt_tuning_init"]);
        Assert.Equal("classify this", (string?)json["prompt_tuning_init_text"]);
        Assert.Null(json["tokenizer_name_or_path"]);
    }

    [Fact]
    public void A_named_adapter_is_saved_alone()
    {
        using var model = AfModel.Adapted();
        foreach (var (_, layer) in model.AdaptedLayers().Where(l => l.Path.EndsWith("q_proj", StringComparison.Ordinal)))
            layer.WithLoRA("style", new LoRAOptions(Rank: 3, Alpha: 6));
        string dir = _dir.File("style");
        AdapterFiles.Save(model, dir, "style");
        Assert.Equal(new[]
        {
            "base_model.model.blocks.0.attn.q_proj.lora_A.weight", "base_model.model.blocks.0.attn.q_proj.lora_B.weight",
            "base_model.model.blocks.1.attn.q_proj.lora_A.weight", "base_model.model.blocks.1.attn.q_proj.lora_B.weight",
        }, Keys(Path.Combine(dir, AdapterFiles.WeightsFileName)));
        var json = Config(dir);
        Assert.Equal(3, (int)json["r"]!);
        Assert.Equal(6.0, (double)json["lora_alpha"]!);
        Assert.Equal(new[] { "q_proj" }, json["target_modules"]!.AsArray().Select(n => (string?)n));
    }
}
