using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.VBLoRA;

/// <summary>Three VB-LoRA layers (L = 4) sharing one bank [6, 4], declared with attributes.</summary>
public sealed partial class VBLoRANet : Module<Tensor, Tensor>
{
    [VBLoRA(2, 6, 4, TopK = 3, Dropout = 0.25, InitVectorBankBound = 0.5)] private Module<Tensor, Tensor> small = Linear(8, 4);
    [VBLoRA(2, 6, 4, TopK = 3, Dropout = 0.25, InitVectorBankBound = 0.5)] private Module<Tensor, Tensor> mid = Linear(4, 4);
    [VBLoRA(2, 6, 4, TopK = 3, Dropout = 0.25, InitVectorBankBound = 0.5)] private Module<Tensor, Tensor> wide = Linear(4, 12);

    public VBLoRANet() : base(nameof(VBLoRANet))
    {
        InitializePeft();
        this.BindSharedTensors();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return wide.call(functional.tanh(mid.call(functional.tanh(small.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>VB-LoRA in PEFT's file format: per-module <c>vblora_logits_A</c>/<c>vblora_logits_B</c>, the model-level trainable
/// <c>base_model.vblora_vector_bank</c> (once), VBLoRAConfig's fields, bitwise round trips, a new adapter from the config,
/// and refused settings (<c>save_only_topk_weights</c>).</summary>
public sealed class VBLoRAFileTests : IDisposable
{
    /// <summary>PEFT's VBLoRAConfig fields (the base PeftConfig fields and VB-LoRA's own).</summary>
    public static readonly string[] ConfigKeys =
    {
        "auto_mapping", "base_model_name_or_path", "bias", "exclude_modules", "fan_in_fan_out", "inference_mode", "init_logits_std",
        "init_vector_bank_bound", "layers_pattern", "layers_to_transform", "modules_to_save", "num_vectors", "peft_type", "peft_version",
        "r", "revision", "save_only_topk_weights", "target_modules", "task_type", "topk", "vblora_dropout", "vector_length",
    };

    private static readonly (string Module, long In, long Out)[] Layers = { ("mid", 4, 4), ("small", 8, 4), ("wide", 4, 12) };

    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor Input() => torch.randn(new long[] { 4, 8 }, generator: new Generator(5));

    [Fact]
    public void SaveWritesPeftsKeysShapesValuesTheBankOnceAndVBLoRAConfigFields()
    {
        using var model = new VBLoRANet();
        RandomizeAdapters(model);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);

        var expected = Layers.SelectMany(l => new[] { "vblora_logits_A", "vblora_logits_B" }.Select(n => $"base_model.model.{l.Module}.{n}"))
            .Append("base_model.vblora_vector_bank");
        Assert.Equal(expected.OrderBy(k => k, StringComparer.Ordinal), Keys(weights));
        Assert.Equal(new long[] { 6, 4 }, Shape(weights, "base_model.vblora_vector_bank"));
        var adapters = model.AdaptedLayers().ToDictionary(l => l.Path, l => (VBLoRAAdapter)l.Layer.GetAdapter("default"));
        foreach (var (module, inF, outF) in Layers)
        {
            Assert.Equal(new[] { 2, inF / 4, 6 }, Shape(weights, $"base_model.model.{module}.vblora_logits_A"));
            Assert.Equal(new[] { outF / 4, 2, 6 }, Shape(weights, $"base_model.model.{module}.vblora_logits_B"));
            foreach (var (name, parameter) in adapters[module].PeftTensors())
            {
                using var stored = Read(dir, $"base_model.model.{module}.{name}");
                AssertBitwiseEqual(parameter, stored);
            }
        }

        using (var stored = Read(dir, "base_model.vblora_vector_bank")) AssertBitwiseEqual(adapters["mid"].Bank, stored);

        var json = Config(dir);
        Assert.Equal(ConfigKeys.Order(StringComparer.Ordinal), json.Select(p => p.Key).OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal("VBLORA", (string?)json["peft_type"]);
        Assert.Equal(2, (int)json["r"]!);
        Assert.Equal(6, (int)json["num_vectors"]!);
        Assert.Equal(4, (int)json["vector_length"]!);
        Assert.Equal(3, (int)json["topk"]!);
        Assert.False((bool)json["save_only_topk_weights"]!);
        Assert.Equal(0.25, (double)json["vblora_dropout"]!);
        Assert.Equal(0.5, (double)json["init_vector_bank_bound"]!);
        Assert.Equal(0.1, (double)json["init_logits_std"]!);
        Assert.Equal("none", (string?)json["bias"]);
        Assert.Equal(new[] { "mid", "small", "wide" }, json["target_modules"]!.AsArray().Select(n => (string?)n).Order());
    }

    [Fact]
    public void RoundTripIsBitwiseLoadsTheBankOnceAndCreatesANewAdapterFromTheConfig()
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        using var x = Input();
        using var saved = new VBLoRANet();
        saved.eval();
        RandomizeAdapters(saved);
        ModelWeights.Save(saved, baseFile);
        AdapterFiles.Save(saved, adapterDir);
        using var expected = Output(saved, x);

        using var fresh = new VBLoRANet();
        fresh.eval();
        ModelWeights.Load(fresh, baseFile);
        Assert.Equal(7, AdapterFiles.Load(fresh, adapterDir).LoadedTensors);
        using (var actual = Output(fresh, x)) AssertBitwiseEqual(expected, actual);
        var bank = ((VBLoRAAdapter)fresh.AdaptedLayers().First().Layer.GetAdapter("default")).Bank;
        Assert.True(bank.requires_grad);                                       // still the trainable parameter after the load
        Assert.Single(fresh.TrainableParameters(), p => ReferenceEquals(p, bank));

        using var other = new VBLoRANet();
        other.eval();
        ModelWeights.Load(other, baseFile);
        AdapterFiles.Load(other, adapterDir, "other");
        other.SetActiveAdapter("other");
        using (var actual = Output(other, x)) AssertBitwiseEqual(expected, actual);
        var created = other.AdaptedLayers().Select(l => (VBLoRAAdapter)l.Layer.GetAdapter("other")).ToList();
        Assert.All(created, c => Assert.Equal(new VBLoRAOptions(2, 6, 4, 3, 0.25, 0.5, 0.1), c.Options));
        Assert.All(created, c => Assert.Same(created[0].Bank, c.Bank));
        Assert.NotSame(created[0].Bank, ((VBLoRAAdapter)other.AdaptedLayers().First().Layer.GetAdapter("default")).Bank);
    }

    [Fact]
    public void ABankOfAnotherShapeIsAMismatchAndNothingIsLoaded()
    {
        string adapterDir = _dir.File("adapter");
        using var model = new VBLoRANet();
        AdapterFiles.Save(model, adapterDir);
        EditWeights(adapterDir, w => w["base_model.vblora_vector_bank"] = torch.zeros(7, 4));
        using var fresh = new VBLoRANet();
        var before = Snapshot(fresh);
        var ex = Assert.Throws<TensorMismatchException>(() => AdapterFiles.Load(fresh, adapterDir));
        Assert.Contains("base_model.vblora_vector_bank: file [7, 4], model [6, 4]", ex.Message, StringComparison.Ordinal);
        AssertUnchanged(before, fresh);
    }

    [Fact]
    public void TheSmallestConfigReadsPeftsDefaults()
    {
        var config = Parse("""{"peft_type": "VBLORA"}""");
        Assert.Same(VBLoRAMethod.Instance, PeftMethods.ForConfig(config));
        Assert.Equal(new VBLoRAOptions(Rank: 4, NumVectors: 256, VectorLength: 256, TopK: 2, Dropout: 0.0, InitVectorBankBound: 0.02, InitLogitsStd: 0.1),
            VBLoRAMethod.Instance.ReadOptions(config, null));
        var full = Parse("""{"peft_type": "VBLORA", "r": 8, "num_vectors": 90, "vector_length": 64, "topk": 3, "vblora_dropout": 0.1, "init_vector_bank_bound": 0.01, "init_logits_std": 0.5, "save_only_topk_weights": false, "bias": "none"}""");
        Assert.Equal(new VBLoRAOptions(8, 90, 64, 3, 0.1, 0.01, 0.5), VBLoRAMethod.Instance.ReadOptions(full, "wide"));
    }

    [Theory]
    [InlineData("\"r\": 0", "\"r\" must be a positive integer")]
    [InlineData("\"num_vectors\": 0", "\"num_vectors\" must be a positive integer")]
    [InlineData("\"vector_length\": -4", "\"vector_length\" must be a positive integer")]
    [InlineData("\"topk\": 300", "\"topk\" must be between 1 and num_vectors (256), found 300")]
    [InlineData("\"vblora_dropout\": 1.0", "\"vblora_dropout\" must be in [0, 1)")]
    [InlineData("\"save_only_topk_weights\": true", "save_only_topk_weights true is not supported: the file holds only the top-k indices")]
    [InlineData("\"bias\": \"all\"", "bias \"all\" is not supported")]
    public void SettingsOutOfRangeOrUnsupportedAreRefusedNamingTheFile(string field, string expected)
    {
        var config = Parse("{\"peft_type\": \"VBLORA\", " + field + "}");
        var ex = Assert.Throws<AdapterFormatException>(() => VBLoRAMethod.Instance.ReadOptions(config, null));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.StartsWith("vblora.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFileWhoseRankBankOrTopKDiffersFromTheModelsAdapterIsReported()
    {
        var mismatches = VBLoRAMethod.Instance.SettingMismatches("wide", new VBLoRAOptions(2, 6, 4, TopK: 1), new VBLoRAOptions(2, 8, 4)).ToList();
        Assert.Equal(new[] { "wide: num_vectors is 6 in the config, 8 in the model", "wide: topk is 1 in the config, 2 in the model" }, mismatches);
        Assert.Empty(VBLoRAMethod.Instance.SettingMismatches("wide", new VBLoRAOptions(2, 6, 4), new VBLoRAOptions(2, 6, 4, Dropout: 0.5, InitLogitsStd: 1)));
    }

    private static AdapterConfig Parse(string json) => AdapterConfig.FromJson(JsonNode.Parse(json)!.AsObject(), "vblora.json");
}
