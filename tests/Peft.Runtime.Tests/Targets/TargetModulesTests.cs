using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft.Runtime.Tests.Targets;

/// <summary>PEFT's target_modules / exclude_modules / rank_pattern rules, and reading them from adapter_config.json.</summary>
public sealed class TargetModulesTests
{
    [Theory]
    [InlineData("q_proj", "model.layers.0.self_attn.q_proj", true)]
    [InlineData("q_proj", "q_proj", true)]
    [InlineData("self_attn.q_proj", "model.layers.0.self_attn.q_proj", true)]
    [InlineData("layers.0.self_attn.q_proj", "model.layers.0.self_attn.q_proj", true)]
    [InlineData("proj", "model.layers.0.self_attn.q_proj", false)]          // no partial segment
    [InlineData("attn.q_proj", "model.layers.0.self_attn.q_proj", false)]   // suffix must start after a dot
    [InlineData("q_proj", "model.layers.0.self_attn.q_proj.lora_A", false)] // equality or suffix, not prefix
    [InlineData("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.q_proj", true)]
    public void ListEntriesMatchTheFullNameOrADotSuffix(string entry, string fullName, bool expected)
    {
        Assert.Equal(expected, TargetModules.EntryMatches(entry, fullName));
        Assert.Equal(expected, TargetModules.Names(entry).IsMatch(fullName));
    }

    [Fact]
    public void RegexIsAFullMatch()
    {
        var regex = TargetModules.Regex(@".*\.(q|v)_proj");
        Assert.True(regex.IsMatch("model.layers.3.self_attn.q_proj"));
        Assert.False(regex.IsMatch("model.layers.3.self_attn.q_proj.extra"));
        Assert.False(TargetModules.Regex("q_proj").IsMatch("model.q_proj"));
        Assert.Throws<PeftConfigurationException>(() => TargetModules.Regex("(unclosed"));
    }

    [Fact]
    public void PeftJsonFormsMapToTheThreeKinds()
    {
        Assert.Same(TargetModules.AllLinear, TargetModules.FromPeft("all-linear", Array.Empty<string>()));
        Assert.Same(TargetModules.AllLinear, TargetModules.FromPeft("ALL-LINEAR", Array.Empty<string>()));
        Assert.Same(TargetModules.AllLinear, TargetModules.FromPeft(null, new[] { "all-linear" }));
        Assert.Equal(TargetModulesKind.Regex, TargetModules.FromPeft(".*q_proj", Array.Empty<string>()).Kind);
        Assert.Equal(new[] { "q_proj", "v_proj" }, TargetModules.FromPeft(null, new[] { "q_proj", "v_proj" }).Entries);
        Assert.Throws<PeftConfigurationException>(() => TargetModules.Names());
    }

    [Fact]
    public void RankAndAlphaPatternsUseTheFirstMatchingKeyInOrderAsPeftDoes()
    {
        // PEFT's get_pattern_key returns the first key (in the config's order) whose (.*\.)?key matches the whole name.
        var targets = new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 8, Alpha: 16))
        {
            RankPattern = new Dictionary<string, int> { ["layers.1.self_attn.q_proj"] = 2, ["q_proj"] = 4, [@"layers\.\d+\.mlp\.up_proj"] = 6 },
            AlphaPattern = new Dictionary<string, double> { ["v_proj"] = 32 },
        };
        Assert.Equal(4, ((LoRAOptions)targets.OptionsFor("model.layers.0.self_attn.q_proj")).Rank);
        Assert.Equal(2, ((LoRAOptions)targets.OptionsFor("model.layers.1.self_attn.q_proj")).Rank);
        Assert.Equal(6, ((LoRAOptions)targets.OptionsFor("model.layers.7.mlp.up_proj")).Rank);
        Assert.Equal(8, ((LoRAOptions)targets.OptionsFor("model.layers.0.self_attn.k_proj")).Rank);
        Assert.Equal(32, ((LoRAOptions)targets.OptionsFor("model.layers.0.self_attn.v_proj")).Alpha);
        Assert.Equal(16, ((LoRAOptions)targets.OptionsFor("model.layers.0.self_attn.q_proj")).Alpha);

        // The general key first: it wins everywhere it matches.
        var generalFirst = targets with { RankPattern = new Dictionary<string, int> { ["q_proj"] = 4, ["layers.1.self_attn.q_proj"] = 2 } };
        Assert.Equal(4, ((LoRAOptions)generalFirst.OptionsFor("model.layers.1.self_attn.q_proj")).Rank);
    }

    [Theory]
    [InlineData("model.layers.0.self_attn.q_proj", true)]
    [InlineData("model.layers.1.self_attn.q_proj", false)]
    [InlineData("model.layers.2.self_attn.q_proj", true)]
    [InlineData("layers.2.self_attn.q_proj", true)]
    [InlineData("model.blocks.0.self_attn.q_proj", false)]
    [InlineData("q_proj", false)]
    public void LayersToTransformReadsTheIndexAfterTheLayersPattern(string name, bool expected)
        => Assert.Equal(expected, TargetModules.InLayers(name, new[] { 0, 2 }, new[] { "layers" }));

    [Fact]
    public void LayersToTransformWithoutPatternTakesTheLastIndex()
    {
        Assert.True(TargetModules.InLayers("model.h.1.attn.c_attn", new[] { 1 }, Array.Empty<string>()));
        Assert.False(TargetModules.InLayers("model.h.0.attn.c_attn", new[] { 1 }, Array.Empty<string>()));
        Assert.True(TargetModules.InLayers("model.h.0.blocks.1.q_proj", new[] { 1 }, Array.Empty<string>()));
        Assert.True(TargetModules.InLayers("anything", Array.Empty<int>(), Array.Empty<string>()));
    }

    [Fact]
    public void AdapterConfigBecomesTargets()
    {
        var lora = PeftTargets.FromAdapterConfig(Config("""
            {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "use_rslora": true, "init_lora_weights": "gaussian",
             "target_modules": "all-linear", "exclude_modules": ["lm_head", "down_proj"], "rank_pattern": {"q_proj": 4}}
            """), "mine");
        Assert.Same(TargetModules.AllLinear, lora.Targets);
        Assert.Equal(new[] { "lm_head", "down_proj" }, lora.Exclude!.Entries);
        Assert.Equal(new LoRAOptions(16, 32, 0.1, true, LoRAInit.Gaussian), lora.Options);
        Assert.Equal("mine", lora.AdapterName);
        Assert.Equal(4, ((LoRAOptions)lora.OptionsFor("a.q_proj")).Rank);

        var lokr = PeftTargets.FromAdapterConfig(Config("""
            {"peft_type": "LOKR", "r": 4, "alpha": 8, "decompose_factor": 4, "decompose_both": true, "target_modules": ".*\\.fc1"}
            """));
        Assert.Equal(new KroneckerOptions(4, 8, 4, true), lokr.Options);
        Assert.Equal(TargetModulesKind.Regex, lokr.Targets.Kind);
    }

    [Theory]
    [InlineData("""{"peft_type": "LORA"}""", "no \"target_modules\"")]
    [InlineData("""{"peft_type": "LORA", "target_modules": ["q"], "bias": "all"}""", "bias \"all\"")]
    [InlineData("""{"peft_type": "LORA", "target_modules": ["q"], "init_lora_weights": "orthogonal"}""", "init_lora_weights")]
    [InlineData("""{"peft_type": "BOFT", "target_modules": ["q"]}""", "peft_type \"BOFT\"")]
    public void UnsupportedConfigsAreRefusedByName(string json, string expected)
    {
        var ex = Assert.Throws<PeftConfigurationException>(() => PeftTargets.FromAdapterConfig(Config(json)));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void EditDistanceIsLevenshtein()
    {
        Assert.Equal(0, Peft.Targeting.NameSuggestions.EditDistance("q_proj", "q_proj"));
        Assert.Equal(1, Peft.Targeting.NameSuggestions.EditDistance("q_prj", "q_proj"));
        Assert.Equal(2, Peft.Targeting.NameSuggestions.EditDistance("qproj", "q_prog"));
        Assert.Equal(6, Peft.Targeting.NameSuggestions.EditDistance("", "q_proj"));
    }

    private static AdapterConfig Config(string json) => AdapterConfig.FromJson((JsonObject)JsonNode.Parse(json)!, "test.json");
}
