using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.HiRA;

/// <summary>Two HiRA ranks (so the config carries rank_pattern) and a dropout.</summary>
public sealed partial class HiRANet : Module<Tensor, Tensor>
{
    [HiRA(rank: 2, dropout: 0.125)] private Module<Tensor, Tensor> small = Linear(8, 6);
    [HiRA(rank: 2, dropout: 0.125)] private Module<Tensor, Tensor> mid = Linear(6, 6);
    [HiRA(rank: 3, dropout: 0.125)] private Module<Tensor, Tensor> wide = Linear(6, 10);

    public HiRANet() : base(nameof(HiRANet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return wide.call(functional.tanh(mid.call(functional.tanh(small.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>HiRA in PEFT's file format: keys <c>…hira_A</c>, <c>…hira_B</c> (no adapter name, no <c>.weight</c>), HiraConfig's
/// fields, a bitwise round trip, a file as PEFT writes it, and out-of-range settings refused.</summary>
public sealed class HiRAFileTests : IDisposable
{
    /// <summary>PEFT's HiraConfig fields (the base PeftConfig fields and HiRA's own).</summary>
    public static readonly string[] ConfigKeys =
    {
        "auto_mapping", "base_model_name_or_path", "exclude_modules", "fan_in_fan_out", "hira_dropout", "inference_mode",
        "init_weights", "layers_pattern", "layers_to_transform", "modules_to_save", "peft_type", "peft_version", "r",
        "rank_pattern", "revision", "target_modules", "task_type",
    };

    private const string PeftHiraConfig = """
        {
          "auto_mapping": null,
          "base_model_name_or_path": null,
          "exclude_modules": null,
          "fan_in_fan_out": false,
          "hira_dropout": 0.0,
          "inference_mode": true,
          "init_weights": true,
          "layers_pattern": null,
          "layers_to_transform": null,
          "modules_to_save": null,
          "peft_type": "HIRA",
          "peft_version": "0.18.0",
          "r": 2,
          "rank_pattern": {
            "wide": 3
          },
          "revision": null,
          "target_modules": [
            "wide",
            "mid",
            "small"
          ],
          "task_type": null
        }
        """;

    private static readonly (string Module, long In, long Out, long Rank)[] Layers = { ("mid", 6, 6, 2), ("small", 8, 6, 2), ("wide", 6, 10, 3) };

    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor Input() => torch.randn(new long[] { 4, 8 }, generator: new Generator(7));

    [Fact]
    public void SaveWritesPeftsKeysShapesValuesAndHiraConfigFields()
    {
        using var model = new HiRANet();
        RandomizeAdapters(model);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);

        var expected = Layers.SelectMany(l => new[] { "hira_A", "hira_B" }.Select(n => $"base_model.model.{l.Module}.{n}"));
        Assert.Equal(expected.OrderBy(k => k, StringComparer.Ordinal), Keys(weights));
        var adapters = model.AdaptedLayers().ToDictionary(l => l.Path, l => (HiRAAdapter)l.Layer.GetAdapter("default"));
        foreach (var (module, inF, outF, r) in Layers)
        {
            Assert.Equal(new[] { r, inF }, Shape(weights, $"base_model.model.{module}.hira_A"));
            Assert.Equal(new[] { outF, r }, Shape(weights, $"base_model.model.{module}.hira_B"));
            foreach (var (name, parameter) in adapters[module].PeftTensors())
            {
                using var stored = Read(dir, $"base_model.model.{module}.{name}");
                AssertBitwiseEqual(parameter, stored);
            }
        }

        var json = Config(dir);
        Assert.Equal(ConfigKeys.Order(StringComparer.Ordinal), json.Select(p => p.Key).OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal("HIRA", (string?)json["peft_type"]);
        Assert.Equal(2, (int)json["r"]!);
        Assert.Equal("{\"wide\":3}", json["rank_pattern"]!.ToJsonString());
        Assert.Equal(0.125, (double)json["hira_dropout"]!);
        Assert.True((bool)json["init_weights"]!);
        Assert.False((bool)json["fan_in_fan_out"]!);
        Assert.Equal(new[] { "mid", "small", "wide" }, json["target_modules"]!.AsArray().Select(n => (string?)n).Order());
    }

    [Fact]
    public void RoundTripIsBitwiseAndANewAdapterIsCreatedFromTheConfig()
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        using var x = Input();
        using var saved = new HiRANet();
        RandomizeAdapters(saved);
        ModelWeights.Save(saved, baseFile);
        AdapterFiles.Save(saved, adapterDir);
        using var expected = Output(saved, x);

        using var fresh = new HiRANet();
        ModelWeights.Load(fresh, baseFile);
        Assert.Equal(6, AdapterFiles.Load(fresh, adapterDir).LoadedTensors);
        using (var actual = Output(fresh, x)) AssertBitwiseEqual(expected, actual);

        using var other = new HiRANet();
        ModelWeights.Load(other, baseFile);
        AdapterFiles.Load(other, adapterDir, "other");
        var created = other.AdaptedLayers().Select(l => (HiRAAdapter)l.Layer.GetAdapter("other")).ToList();
        Assert.Equal(new[] { 2, 2, 3 }, created.Select(a => a.Options.Rank).Order());
        Assert.All(created, a => Assert.Equal(0.125, a.Options.Dropout));
        other.SetActiveAdapter("other");
        using (var switched = Output(other, x)) AssertBitwiseEqual(expected, switched);
    }

    [Fact]
    public void AnAdapterAsPeftWritesItLoadsUnderItsOwnAndANewName()
    {
        string dir = _dir.File("peft_adapter");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, AdapterFiles.ConfigFileName), PeftHiraConfig);
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (module, inF, outF, r) in Layers)
        {
            values[$"base_model.model.{module}.hira_A"] = torch.randn(r, inF);
            values[$"base_model.model.{module}.hira_B"] = torch.randn(outF, r);
        }

        SafetensorsFile.Write(Path.Combine(dir, AdapterFiles.WeightsFileName), values.ToList(), new Dictionary<string, string> { ["format"] = "pt" });
        foreach (string name in new[] { AdapterNames.Default, "peft" })
        {
            using var model = new HiRANet();
            Assert.Equal(6, AdapterFiles.Load(model, dir, name).LoadedTensors);
            foreach (var (path, layer) in model.AdaptedLayers())
            {
                var adapter = (HiRAAdapter)layer.GetAdapter(name);
                Assert.Equal(path == "wide" ? 3 : 2, adapter.Options.Rank);
                foreach (var (peftName, parameter) in adapter.PeftTensors())
                    AssertBitwiseEqual(values[AdapterFiles.KeyPrefix + path + "." + peftName], parameter);
            }
        }

        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void TheSmallestConfigReadsPeftsDefaultsAndInitialisationSettingsAreAccepted()
    {
        var config = Parse("""{"peft_type": "HIRA", "init_weights": "gaussian"}""");
        Assert.Same(HiRAMethod.Instance, PeftMethods.ForConfig(config));
        Assert.Equal(new HiRAOptions(Rank: 32, Dropout: 0.0), HiRAMethod.Instance.ReadOptions(config, null));
        var patterned = Parse("""{"peft_type": "HIRA", "r": 4, "hira_dropout": 0.5, "init_weights": false, "rank_pattern": {"wide": 6}}""");
        Assert.Equal(new HiRAOptions(6, 0.5), HiRAMethod.Instance.ReadOptions(patterned, "blocks.0.wide"));
        Assert.Equal(new HiRAOptions(4, 0.5), HiRAMethod.Instance.ReadOptions(patterned, "blocks.0.small"));
    }

    [Theory]
    [InlineData("\"r\": 0", "\"r\" must be a positive integer")]
    [InlineData("\"hira_dropout\": 1.0", "\"hira_dropout\" must be in [0, 1)")]
    public void OutOfRangeSettingsAreRefusedNamingTheFile(string field, string expected)
    {
        var config = Parse("{\"peft_type\": \"HIRA\", " + field + "}");
        var ex = Assert.Throws<AdapterFormatException>(() => HiRAMethod.Instance.ReadOptions(config, null));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.StartsWith("hira.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFileWhoseRankDiffersFromTheModelsAdapterIsReported()
    {
        Assert.Equal(new[] { "wide: r is 3 in the config, 2 in the model" }, HiRAMethod.Instance.SettingMismatches("wide", new HiRAOptions(3), new HiRAOptions(2)));
        Assert.Empty(HiRAMethod.Instance.SettingMismatches("wide", new HiRAOptions(3), new HiRAOptions(3, Dropout: 0.5)));
    }

    private static AdapterConfig Parse(string json) => AdapterConfig.FromJson(JsonNode.Parse(json)!.AsObject(), "hira.json");
}
