using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Runtime.Tests.Serialization;
using Peft.Runtime.Tests.SVFit;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.KaSA;

/// <summary>
/// KaSA files in PEFT's format (LoraConfig with <c>kasa_config</c>; <c>lora_A.weight</c>, <c>lora_B.weight</c>, <c>lora_diag</c>):
/// exact keys and fields, a load onto the original base truncates it again and reproduces the trained outputs (as PEFT re-applies
/// the truncation), the truncated base is refused by the seam's fingerprints, and a bad <c>kasa_config</c> is refused naming
/// the file and the field.
/// </summary>
public sealed class KaSAFileTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private (string BaseFile, string AdapterDir, SvdFamilyNet Trained) Train()
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        var trained = new SvdFamilyNet();
        ModelWeights.Save(trained, baseFile);
        trained.ApplyTargets(new PeftTargets(TargetModules.Names("q", "v"), new KaSAOptions(Rank: 2, Alpha: 4, Beta: 0.5, Gamma: 0.25)));
        using (var generator = new Generator(77))
        using (torch.no_grad())
        {
            foreach (var p in trained.TrainableParameters())
            {
                using var noise = torch.randn(p.shape, generator: generator) * 0.3;
                p.add_(noise);
            }
        }

        AdapterFiles.Save(trained, adapterDir);
        return (baseFile, adapterDir, trained);
    }

    [Fact]
    public void TheFileHasPeftsKeysAndKasaConfig()
    {
        var (_, adapterDir, trained) = Train();
        using var _t = trained;
        var header = Header(Path.Combine(adapterDir, AdapterFiles.WeightsFileName));
        var keys = header.Select(kv => kv.Key).Where(k => k != "__metadata__").OrderBy(k => k, StringComparer.Ordinal).ToArray();
        var expected = new[] { "q", "v" }.SelectMany(m => new[] { "lora_A.weight", "lora_B.weight", "lora_diag" }.Select(n => $"base_model.model.{m}.{n}"))
            .OrderBy(k => k, StringComparer.Ordinal).ToArray();
        Assert.Equal(expected, keys);
        Assert.Equal(new long[] { 2 }, header["base_model.model.q.lora_diag"]!["shape"]!.AsArray().Select(n => n!.GetValue<long>()));

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.False(config["use_dora"]!.GetValue<bool>());
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());
        Assert.Equal(2, config["r"]!.GetValue<int>());
        var kasa = config["kasa_config"]!.AsObject();
        Assert.Equal(new[] { "beta", "gamma" }, kasa.Select(kv => kv.Key));
        Assert.Equal(0.5, kasa["beta"]!.GetValue<double>());
        Assert.Equal(0.25, kasa["gamma"]!.GetValue<double>());
    }

    [Fact]
    public void AReloadOntoTheOriginalBaseTruncatesItAgainAndGivesTheTrainedOutputs()
    {
        var (baseFile, adapterDir, trained) = Train();
        using var _t = trained;
        using var x = torch.randn(new long[] { 3, 6 }, generator: new Generator(5));
        using var expected = Output(trained, x);

        using var fresh = new SvdFamilyNet(seed: 99);
        ModelWeights.Load(fresh, baseFile);
        AdapterFiles.Load(fresh, adapterDir);
        using var actual = Output(fresh, x);
        TensorAssert.Close(expected, actual, 1e-5);
        var adapter = (KaSAAdapter)fresh.AdaptedLayers().First().Layer.GetAdapter("default");
        Assert.Equal(0.5, adapter.Options.Beta);
        Assert.Equal(0.25, adapter.Options.Gamma);
        var before = trained.AdapterParameters();
        var after = fresh.AdapterParameters();
        Assert.Equal(before.Count, after.Count);
        for (int i = 0; i < before.Count; i++) AssertBitwiseEqual(before[i], after[i]);
    }

    [Fact]
    public void TheTruncatedBaseIsRefusedAndLeavesTheModelUnchanged()
    {
        var (_, adapterDir, trained) = Train();
        using var _t = trained;
        string truncatedFile = _dir.File("truncated.safetensors");
        ModelWeights.Save(trained, truncatedFile);
        using var truncated = new SvdFamilyNet();
        ModelWeights.Load(truncated, truncatedFile);
        var before = Snapshot(truncated);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(truncated, adapterDir));
        Assert.Contains("residual", ex.Message);
        Assert.Contains("'q'", ex.Message);
        AssertUnchanged(before, truncated);
    }

    [Theory]
    [InlineData("{\"beta\": -1}", "kasa_config.beta must be a finite number >= 0")]
    [InlineData("{\"gamma\": \"x\"}", "kasa_config.gamma must be a finite number >= 0")]
    [InlineData("7", "\"kasa_config\" must be an object")]
    public void ABadKasaConfigIsRefusedNamingTheField(string kasa, string expected)
    {
        var (baseFile, adapterDir, trained) = Train();
        using var _t = trained;
        string configPath = Path.Combine(adapterDir, AdapterFiles.ConfigFileName);
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["kasa_config"] = JsonNode.Parse(kasa);
        File.WriteAllText(configPath, config.ToJsonString());
        using var fresh = new SvdFamilyNet();
        ModelWeights.Load(fresh, baseFile);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, adapterDir));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains(AdapterFiles.ConfigFileName, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void KasaConfigGoesToKaSANotLoRA()
    {
        var config = AdapterConfig.FromJson(JsonNode.Parse("{\"peft_type\": \"LORA\", \"r\": 2, \"kasa_config\": {}}")!.AsObject(), "adapter_config.json");
        Assert.Same(KaSAMethod.Instance, PeftMethods.ForConfig(config));
        var options = (KaSAOptions)KaSAMethod.Instance.ReadOptions(config, null);
        Assert.Equal(KaSARules.DefaultBeta, options.Beta);
        Assert.Equal(KaSARules.DefaultGamma, options.Gamma);
        var plain = AdapterConfig.FromJson(JsonNode.Parse("{\"peft_type\": \"LORA\", \"r\": 2, \"kasa_config\": null}")!.AsObject(), "adapter_config.json");
        Assert.Same(LoRAMethod.Instance, PeftMethods.ForConfig(plain));
        Assert.Contains("KaSA adapters are read by the KaSA method", Assert.Throws<AdapterFormatException>(() => LoRAMethod.Instance.ReadOptions(config, null)).Message);
    }
}
