using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.LoHa;

/// <summary>Two LoHa layers with different ranks and alphas (so the config carries rank_pattern/alpha_pattern) and dropouts.</summary>
public sealed partial class LoHaNet : Module<Tensor, Tensor>
{
    [LoHa(rank: 2, alpha: 4, RankDropout = 0.25, ModuleDropout = 0.125)] private Module<Tensor, Tensor> small = Linear(8, 6);
    [LoHa(rank: 2, alpha: 4, RankDropout = 0.25, ModuleDropout = 0.125)] private Module<Tensor, Tensor> mid = Linear(6, 6);
    [LoHa(rank: 3, alpha: 6, RankDropout = 0.25, ModuleDropout = 0.125)] private Module<Tensor, Tensor> wide = Linear(6, 10);

    public LoHaNet() : base(nameof(LoHaNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return wide.call(functional.tanh(mid.call(functional.tanh(small.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>LoHa in PEFT's file format: keys without the adapter name and without <c>.weight</c>, LoHaConfig's fields, a bitwise
/// round trip, a file as PEFT writes it, and the config settings that are refused.</summary>
public sealed class LoHaFileTests : IDisposable
{
    /// <summary>PEFT 0.20's LoHaConfig fields (the base PeftConfig fields and LoHa's own).</summary>
    public static readonly string[] ConfigKeys =
    {
        "alpha", "alpha_pattern", "auto_mapping", "base_model_name_or_path", "exclude_modules", "inference_mode", "init_weights",
        "layers_pattern", "layers_to_transform", "module_dropout", "modules_to_save", "peft_type", "peft_version", "r",
        "rank_dropout", "rank_pattern", "revision", "target_modules", "task_type", "use_effective_conv2d",
    };

    private const string PeftLohaConfig = """
        {
          "alpha": 4,
          "alpha_pattern": {
            "wide": 6
          },
          "auto_mapping": null,
          "base_model_name_or_path": null,
          "exclude_modules": null,
          "inference_mode": true,
          "init_weights": true,
          "layers_pattern": null,
          "layers_to_transform": null,
          "module_dropout": 0.0,
          "modules_to_save": null,
          "peft_type": "LOHA",
          "peft_version": "0.20.0",
          "r": 2,
          "rank_dropout": 0.0,
          "rank_pattern": {
            "wide": 3
          },
          "revision": null,
          "target_modules": [
            "wide",
            "mid",
            "small"
          ],
          "task_type": null,
          "use_effective_conv2d": false
        }
        """;

    private static readonly (string Module, long In, long Out, long Rank)[] Layers = { ("mid", 6, 6, 2), ("small", 8, 6, 2), ("wide", 6, 10, 3) };

    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor Input() => torch.randn(new long[] { 4, 8 }, generator: new Generator(5));

    [Fact]
    public void SaveWritesPeftsKeysShapesValuesAndLoHaConfigFields()
    {
        using var model = new LoHaNet();
        RandomizeAdapters(model);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);

        var expected = Layers.SelectMany(l => new[] { "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b" }.Select(n => $"base_model.model.{l.Module}.{n}"));
        Assert.Equal(expected.OrderBy(k => k, StringComparer.Ordinal), Keys(weights));
        var adapters = model.AdaptedLayers().ToDictionary(l => l.Path, l => (LoHaAdapter)l.Layer.GetAdapter("default"));
        foreach (var (module, inF, outF, r) in Layers)
        {
            Assert.Equal(new[] { outF, r }, Shape(weights, $"base_model.model.{module}.hada_w1_a"));
            Assert.Equal(new[] { r, inF }, Shape(weights, $"base_model.model.{module}.hada_w1_b"));
            Assert.Equal(new[] { outF, r }, Shape(weights, $"base_model.model.{module}.hada_w2_a"));
            Assert.Equal(new[] { r, inF }, Shape(weights, $"base_model.model.{module}.hada_w2_b"));
            foreach (var (name, parameter) in adapters[module].PeftTensors())
            {
                using var stored = Read(dir, $"base_model.model.{module}.{name}");
                AssertBitwiseEqual(parameter, stored);
            }
        }

        var json = Config(dir);
        Assert.Equal(ConfigKeys.Order(StringComparer.Ordinal), json.Select(p => p.Key).OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal("LOHA", (string?)json["peft_type"]);
        Assert.Equal(2, (int)json["r"]!);
        Assert.Equal(4.0, (double)json["alpha"]!);
        Assert.Equal("{\"wide\":3}", json["rank_pattern"]!.ToJsonString());
        Assert.Equal("{\"wide\":6}", json["alpha_pattern"]!.ToJsonString());
        Assert.Equal(0.25, (double)json["rank_dropout"]!);
        Assert.Equal(0.125, (double)json["module_dropout"]!);
        Assert.True((bool)json["init_weights"]!);
        Assert.False((bool)json["use_effective_conv2d"]!);
        Assert.Equal(new[] { "mid", "small", "wide" }, json["target_modules"]!.AsArray().Select(n => (string?)n).Order());
        Assert.True((bool)json["inference_mode"]!);
    }

    [Fact]
    public void RoundTripIsBitwiseAndANewAdapterIsCreatedFromTheConfig()
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        using var x = Input();
        using var saved = new LoHaNet();
        RandomizeAdapters(saved);
        ModelWeights.Save(saved, baseFile);
        AdapterFiles.Save(saved, adapterDir);
        using var expected = Output(saved, x);

        using var fresh = new LoHaNet();
        ModelWeights.Load(fresh, baseFile);
        Assert.Equal(12, AdapterFiles.Load(fresh, adapterDir).LoadedTensors);
        using (var actual = Output(fresh, x)) AssertBitwiseEqual(expected, actual);

        using var other = new LoHaNet();
        ModelWeights.Load(other, baseFile);
        AdapterFiles.Load(other, adapterDir, "other");
        var created = other.AdaptedLayers().Select(l => (LoHaAdapter)l.Layer.GetAdapter("other")).ToList();
        Assert.Equal(new[] { 2, 2, 3 }, created.Select(a => a.Options.Rank).Order());
        Assert.All(created, a => Assert.Equal((0.25, 0.125), (a.Options.RankDropout, a.Options.ModuleDropout)));
        other.SetActiveAdapter("other");
        using (var switched = Output(other, x)) AssertBitwiseEqual(expected, switched);
    }

    [Fact]
    public void AnAdapterAsPeftWritesItLoadsUnderItsOwnAndANewName()
    {
        string dir = _dir.File("peft_adapter");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, AdapterFiles.ConfigFileName), PeftLohaConfig);
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (module, inF, outF, r) in Layers)
        {
            values[$"base_model.model.{module}.hada_w1_a"] = torch.randn(outF, r);
            values[$"base_model.model.{module}.hada_w1_b"] = torch.randn(r, inF);
            values[$"base_model.model.{module}.hada_w2_a"] = torch.randn(outF, r);
            values[$"base_model.model.{module}.hada_w2_b"] = torch.randn(r, inF);
        }

        SafetensorsFile.Write(Path.Combine(dir, AdapterFiles.WeightsFileName), values.ToList(), new Dictionary<string, string> { ["format"] = "pt" });
        foreach (string name in new[] { AdapterNames.Default, "peft" })
        {
            using var model = new LoHaNet();
            Assert.Equal(12, AdapterFiles.Load(model, dir, name).LoadedTensors);
            foreach (var (path, layer) in model.AdaptedLayers())
            {
                var adapter = (LoHaAdapter)layer.GetAdapter(name);
                Assert.Equal(path == "wide" ? (3, 6.0) : (2, 4.0), (adapter.Options.Rank, adapter.Options.Alpha));
                foreach (var (peftName, parameter) in adapter.PeftTensors())
                    AssertBitwiseEqual(values[AdapterFiles.KeyPrefix + path + "." + peftName], parameter);
            }
        }

        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void TheSmallestConfigReadsPeftsDefaultsAndSettingsThatOnlyInitialiseAreAccepted()
    {
        var config = Parse("""{"peft_type": "LOHA", "init_weights": false, "use_effective_conv2d": true, "use_khatri_rao": "auto", "r2": null}""");
        Assert.Same(LoHaMethod.Instance, PeftMethods.ForConfig(config));
        Assert.Equal(new LoHaOptions(Rank: 8, Alpha: 8.0, RankDropout: 0.0, ModuleDropout: 0.0), LoHaMethod.Instance.ReadOptions(config, null));
        var patterned = Parse("""{"peft_type": "LOHA", "r": 4, "alpha": 2, "rank_dropout": 0.5, "rank_pattern": {"wide": 6}, "alpha_pattern": {"wide": 3}}""");
        Assert.Equal(new LoHaOptions(6, 3.0, 0.5, 0.0), LoHaMethod.Instance.ReadOptions(patterned, "blocks.0.wide"));
        Assert.Equal(new LoHaOptions(4, 2.0, 0.5, 0.0), LoHaMethod.Instance.ReadOptions(patterned, "blocks.0.small"));
    }

    [Theory]
    [InlineData("\"r\": 0", "\"r\" must be a positive integer")]
    [InlineData("\"alpha\": -1", "\"alpha\" must be in")]
    [InlineData("\"rank_dropout\": 1.0", "\"rank_dropout\" must be in [0, 1)")]
    [InlineData("\"module_dropout\": -0.5", "\"module_dropout\" must be in [0, 1)")]
    [InlineData("\"r\": 4, \"r2\": 2", "r2 2 is not supported")]
    [InlineData("\"use_khatri_rao\": true", "use_khatri_rao true is not supported")]
    [InlineData("\"init_weights\": \"abba\"", "init_weights \"abba\" is not supported")]
    public void SettingsThatChangeTheUpdateOrAreOutOfRangeAreRefusedNamingTheFile(string field, string expected)
    {
        var config = Parse("{\"peft_type\": \"LOHA\", " + field + "}");
        var ex = Assert.Throws<AdapterFormatException>(() => LoHaMethod.Instance.ReadOptions(config, null));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.StartsWith("loha.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFileWhoseRankDiffersFromTheModelsAdapterIsReported()
    {
        var mismatches = LoHaMethod.Instance.SettingMismatches("wide", new LoHaOptions(3, 6), new LoHaOptions(2, 4)).ToList();
        Assert.Equal(new[] { "wide: r is 3 in the config, 2 in the model", "wide: alpha is 6 in the config, 4 in the model" }, mismatches);
        Assert.Empty(LoHaMethod.Instance.SettingMismatches("wide", new LoHaOptions(3, 6), new LoHaOptions(3, 6, RankDropout: 0.5)));
    }

    private static AdapterConfig Parse(string json) => AdapterConfig.FromJson(JsonNode.Parse(json)!.AsObject(), "loha.json");
}
