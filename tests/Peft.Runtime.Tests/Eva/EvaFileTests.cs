using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Eva;

/// <summary>EVA in PEFT's files: after the redistribution the config keeps the declared r and lora_alpha, lists the layers EVA
/// changed under rank_pattern and alpha_pattern and leaves a layer given rank 0 out of target_modules, with init_lora_weights
/// "eva" and eva_config's six fields, as PEFT's <c>_load_eva_state_dict</c> and <c>LoraConfig</c> write them; a load creates each
/// layer's adapter from them; a malformed eva_config is refused naming the field.</summary>
public sealed class EvaFileTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string ConfigPath(string dir) => Path.Combine(dir, AdapterFiles.ConfigFileName);

    /// <summary>EvaPair after EVA (p rank 2 with alpha 4, q rank 0: see EvaTests), its B moved off zero, saved with its base.</summary>
    private (string BaseFile, string AdapterDir, EvaPair Model) Trained(EvaConfig config)
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        var model = new EvaPair();
        using (var plain = new EvaPairBase())
        {
            ModelWeights.Save(plain, baseFile);
        }

        ModelWeights.Load(model, baseFile);
        using var xp = EvaData.Axes(Math.Sqrt(11), 3, 0);
        using var xq = EvaData.Axes(Math.Sqrt(8), Math.Sqrt(7), Math.Sqrt(5));
        model.InitializeEva(new[] { 0 }, (_, _) => model.Feed(xp, xq), config);
        var p = (LoRAAdapter)model.AdaptedLayers().Single(l => l.Path == "p").Layer.GetAdapter(AdapterNames.Default);
        TensorAssert.Randomize(p.B, 0.3);
        model.eval();
        AdapterFiles.Save(model, adapterDir);
        return (baseFile, adapterDir, model);
    }

    [Fact]
    public void TheConfigIsPeftsAndALoadCreatesTheRedistributedRanks()
    {
        var eva = new EvaConfig(Whiten: true, LabelMaskValue: -1);
        var (baseFile, adapterDir, model) = Trained(eva);
        using var _m = model;
        var config = JsonNode.Parse(File.ReadAllText(ConfigPath(adapterDir)))!.AsObject();
        Assert.Equal("eva", config["init_lora_weights"]!.GetValue<string>());
        Assert.Equal(1, config["r"]!.GetValue<int>());
        Assert.Equal(2.0, config["lora_alpha"]!.GetValue<double>());
        Assert.True(JsonNode.DeepEquals(new JsonObject { ["p"] = 2 }, config["rank_pattern"]), config["rank_pattern"]!.ToJsonString());
        Assert.True(JsonNode.DeepEquals(new JsonObject { ["p"] = 4.0 }, config["alpha_pattern"]), config["alpha_pattern"]!.ToJsonString());
        Assert.True(JsonNode.DeepEquals(new JsonArray("p"), config["target_modules"]), config["target_modules"]!.ToJsonString());
        var expectedEva = new JsonObject
        {
            ["rho"] = 2.0, ["tau"] = 0.99, ["use_label_mask"] = true, ["label_mask_value"] = -1, ["whiten"] = true, ["adjust_scaling_factors"] = true,
        };
        Assert.True(JsonNode.DeepEquals(expectedEva, config["eva_config"]), config["eva_config"]!.ToJsonString());

        using var fresh = new EvaPairBase();
        ModelWeights.Load(fresh, baseFile);
        fresh.eval();
        AdapterFiles.Load(fresh, adapterDir);
        var p = (LoRAAdapter)fresh.AdaptedLayers().Single(l => l.Path == "p").Layer.GetAdapter(AdapterNames.Default);
        Assert.Equal((2, 4.0), (p.Rank, p.Options.Alpha));
        Assert.Equal(new EvaSettings(eva, 1, 2.0), p.Options.Eva);
        Assert.DoesNotContain(fresh.AdaptedLayers(), l => l.Path == "q" && l.Layer.HasAdapter(AdapterNames.Default));
        using var x = torch.randn(new long[] { 4, 3 }, generator: new Generator(9));
        using var expected = model.call(x);
        using var actual = fresh.call(x);
        TensorAssert.Equal(expected, actual);

        // Saved again, the file is the same config: r and lora_alpha stay the declared ones.
        string again = _dir.File("again");
        AdapterFiles.Save(fresh, again);
        var reread = JsonNode.Parse(File.ReadAllText(ConfigPath(again)))!.AsObject();
        foreach (var key in new[] { "r", "lora_alpha", "rank_pattern", "alpha_pattern", "eva_config", "init_lora_weights", "target_modules" })
        {
            Assert.True(JsonNode.DeepEquals(config[key], reread[key]), $"{key}: {reread[key]?.ToJsonString()}");
        }
    }

    [Fact]
    public void AFileWithoutEvaConfigGetsPeftsDefaults()
    {
        var (baseFile, adapterDir, model) = Trained(new EvaConfig());
        using var _m = model;
        var config = JsonNode.Parse(File.ReadAllText(ConfigPath(adapterDir)))!.AsObject();
        config["eva_config"] = null;
        File.WriteAllText(ConfigPath(adapterDir), config.ToJsonString());
        using var fresh = new EvaPairBase();
        ModelWeights.Load(fresh, baseFile);
        AdapterFiles.Load(fresh, adapterDir);
        var p = (LoRAAdapter)fresh.AdaptedLayers().Single(l => l.Path == "p").Layer.GetAdapter(AdapterNames.Default);
        Assert.Equal(new EvaSettings(new EvaConfig(), 1, 2.0), p.Options.Eva);
    }

    [Theory]
    [InlineData("""{"rho": 0.5}""", "eva_config.rho")]
    [InlineData("""{"tau": 2}""", "eva_config.tau")]
    [InlineData("""{"whiten": "yes"}""", "eva_config.whiten")]
    [InlineData("""{"label_mask_value": 1.5}""", "eva_config.label_mask_value")]
    [InlineData("5", "must be an object")]
    public void MalformedEvaConfigsAreRefusedNamingTheField(string eva, string message)
    {
        var (baseFile, adapterDir, model) = Trained(new EvaConfig());
        using var _m = model;
        var config = JsonNode.Parse(File.ReadAllText(ConfigPath(adapterDir)))!.AsObject();
        config["eva_config"] = JsonNode.Parse(eva);
        File.WriteAllText(ConfigPath(adapterDir), config.ToJsonString());
        using var fresh = new EvaPairBase();
        ModelWeights.Load(fresh, baseFile);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, adapterDir));
        Assert.Contains(message, ex.Message);
        Assert.DoesNotContain(fresh.AdaptedLayers(), l => l.Layer.Adapters.Count > 0);
    }
}
