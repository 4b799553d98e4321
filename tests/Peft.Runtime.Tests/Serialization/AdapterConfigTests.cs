using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>AdapterConfig: PEFT's defaults, target matching, patterns and JSON layout.</summary>
public sealed class AdapterConfigTests
{
    private static AdapterConfig Parse(string json) => AdapterConfig.FromJson(JsonNode.Parse(json)!.AsObject(), "test.json");

    [Fact]
    public void Missing_fields_take_PEFTs_defaults()
    {
        var config = Parse("""{"peft_type": "LORA"}""");
        Assert.Same(LoRAMethod.Instance, PeftMethods.ForConfig(config));
        Assert.Equal(new LoRAOptions(Rank: 8, Alpha: 8.0, Dropout: 0.0, UseRsLora: false, Init: LoRAInit.KaimingUniform), LoRAMethod.Instance.ReadOptions(config, null));
        Assert.Empty(config.TargetModules);
        Assert.Null(config.TargetModulesRegex);
        var lokr = Parse("""{"peft_type": "LOKR"}""");
        Assert.Equal(new KroneckerOptions(Rank: 8, Alpha: 8.0, Factor: -1, DecomposeBoth: false), KroneckerMethod.Instance.ReadOptions(lokr, null));
    }

    [Fact]
    public void LoKr_reads_alpha_not_lora_alpha()
    {
        var config = Parse("""{"peft_type": "LOKR", "alpha": 3, "lora_alpha": 99, "decompose_both": true, "decompose_factor": 4}""");
        var options = (KroneckerOptions)PeftMethods.ForConfig(config).ReadOptions(config, null);
        Assert.Equal(3.0, options.Alpha);
        Assert.True(options.DecomposeBoth);
        Assert.Equal(4, options.Factor);
    }

    [Theory]
    [InlineData("q_proj", true)]
    [InlineData("model.layers.0.self_attn.q_proj", true)]
    [InlineData("model.layers.0.self_attn.xq_proj", false)]
    [InlineData("model.layers.0.q_proj.inner", false)]
    [InlineData("layers.0.self_attn.v_proj", true)]
    public void List_targets_match_the_name_or_a_dotted_suffix(string path, bool expected)
        => Assert.Equal(expected, Parse("""{"peft_type": "LORA", "target_modules": ["q_proj", "self_attn.v_proj"]}""").Targets(path));

    [Theory]
    [InlineData("layers.0.q_proj", true)]
    [InlineData("layers.0.k_proj", false)]
    [InlineData("q_proj", false)]
    [InlineData("layers.0.q_proj.lora_A", false)]
    public void A_string_target_is_a_full_regex_match(string path, bool expected)
        => Assert.Equal(expected, Parse("""{"peft_type": "LORA", "target_modules": ".*\\.q_proj"}""").Targets(path));

    [Fact]
    public void Exclude_modules_win_over_targets_as_list_or_regex()
    {
        var list = Parse("""{"peft_type": "LORA", "target_modules": ["q_proj"], "exclude_modules": ["layers.1.q_proj"]}""");
        Assert.True(list.Targets("layers.0.q_proj"));
        Assert.False(list.Targets("layers.1.q_proj"));
        var regex = Parse("""{"peft_type": "LORA", "target_modules": ["q_proj"], "exclude_modules": "layers\\.[1-9]\\..*"}""");
        Assert.True(regex.Targets("layers.0.q_proj"));
        Assert.False(regex.Targets("layers.3.q_proj"));
    }

    [Fact]
    public void Layers_to_transform_selects_indices_under_the_layers_pattern()
    {
        var config = Parse("""{"peft_type": "LORA", "target_modules": ["q_proj"], "layers_to_transform": [0, 2], "layers_pattern": "layers"}""");
        Assert.True(config.Targets("model.layers.0.attn.q_proj"));
        Assert.False(config.Targets("model.layers.1.attn.q_proj"));
        Assert.True(config.Targets("model.layers.2.attn.q_proj"));
        Assert.True(config.Targets("layers.2.attn.q_proj"));
        Assert.False(config.Targets("model.blocks.0.attn.q_proj"));
        Assert.False(config.Targets("q_proj"));

        var anyList = Parse("""{"peft_type": "LORA", "target_modules": ["q_proj"], "layers_to_transform": 1}""");
        Assert.Equal(new[] { 1 }, anyList.LayersToTransform);
        Assert.True(anyList.Targets("model.h.1.attn.q_proj"));
        Assert.False(anyList.Targets("model.h.0.attn.q_proj"));
        Assert.True(anyList.Targets("h.1.attn.q_proj"));
        Assert.True(anyList.Targets("model.h.0.blocks.1.q_proj")); // the last index wins, as PEFT's greedy regex does
    }

    [Fact]
    public void Patterns_match_like_PEFTs_get_pattern_key()
    {
        var config = Parse("""
            {"peft_type": "LORA", "r": 8, "lora_alpha": 16,
             "rank_pattern": {"v_proj": 2, "layers\\.1\\..*\\.q_proj": 6},
             "alpha_pattern": {"layers.0.self_attn.q_proj": 3}}
            """);
        Assert.Equal(2, config.RankFor("model.layers.0.self_attn.v_proj", 8));
        Assert.Equal(6, config.RankFor("model.layers.1.self_attn.q_proj", 8));
        Assert.Equal(8, config.RankFor("model.layers.0.self_attn.q_proj", 8));
        Assert.Equal(8, config.RankFor("model.layers.0.self_attn.xv_proj", 8));
        Assert.Equal(3.0, config.AlphaFor("model.layers.0.self_attn.q_proj", 16));
        Assert.Equal(16.0, config.AlphaFor("model.layers.1.self_attn.q_proj", 16));
        var options = (LoRAOptions)LoRAMethod.Instance.ReadOptions(config, "model.layers.0.self_attn.v_proj");
        Assert.Equal((2, 16.0), (options.Rank, options.Alpha));
    }

    [Fact]
    public void ToJson_sorts_keys_with_two_space_indent_and_keeps_nulls()
    {
        var text = AdapterConfig.ToJson(new Dictionary<string, JsonNode?>
        {
            ["r"] = 4,
            ["alpha_pattern"] = new JsonObject(),
            ["task_type"] = null,
            ["target_modules"] = new JsonArray("q", "v"),
        });
        Assert.Equal("{\n  \"alpha_pattern\": {},\n  \"r\": 4,\n  \"target_modules\": [\n    \"q\",\n    \"v\"\n  ],\n  \"task_type\": null\n}\n", text);
    }

    [Fact]
    public void Read_reports_repeated_keys_as_a_format_error()
    {
        string path = Path.Combine(Path.GetTempPath(), $"peft-config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """{"peft_type": "LORA", "peft_type": "LOKR"}""");
        try
        {
            var ex = Assert.Throws<AdapterFormatException>(() => AdapterConfig.Read(path));
            Assert.Contains(path, ex.Message);
            Assert.Contains("peft_type", ex.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Integers_out_of_range_are_format_errors()
    {
        var ex = Assert.Throws<AdapterFormatException>(() => LoRAMethod.Instance.ReadOptions(Parse("""{"peft_type": "LORA", "r": 1e12}"""), null));
        Assert.Contains("\"r\" must be an integer", ex.Message);
        Assert.Contains("test.json", ex.Message);
    }
}
