using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.RandLoRA;

/// <summary>Three RandLoRA layers (largest in 8, largest out 10: bases [3, 1, 8] and [10, 3, 3]), declared with attributes.</summary>
public sealed partial class RandLoRANet : Module<Tensor, Tensor>
{
    [RandLoRA(rank: 3, alpha: 6, Dropout = 0.25, ProjectionPrngKey = 3)] private Module<Tensor, Tensor> small = Linear(8, 6);
    [RandLoRA(rank: 3, alpha: 6, Dropout = 0.25, ProjectionPrngKey = 3)] private Module<Tensor, Tensor> mid = Linear(6, 6);
    [RandLoRA(rank: 3, alpha: 6, Dropout = 0.25, ProjectionPrngKey = 3)] private Module<Tensor, Tensor> wide = Linear(6, 10);

    public RandLoRANet() : base(nameof(RandLoRANet))
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

/// <summary>The same shape of model with sparse bases and no bases in its files (save_projection false).</summary>
public sealed partial class RandLoRANoProjectionNet : Module<Tensor, Tensor>
{
    [RandLoRA(rank: 4, SaveProjection = false, Sparse = true)] private Module<Tensor, Tensor> small = Linear(8, 6);
    [RandLoRA(rank: 4, SaveProjection = false, Sparse = true)] private Module<Tensor, Tensor> wide = Linear(6, 10);

    public RandLoRANoProjectionNet() : base(nameof(RandLoRANoProjectionNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return wide.call(functional.tanh(small.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>RandLoRA in PEFT's file format: per-module <c>randlora_lambda</c>/<c>randlora_gamma</c>, the model-level
/// <c>base_model.randlora_A</c>/<c>base_model.randlora_B</c>, RandLoraConfig's fields, bitwise round trips, regeneration when
/// the file has no bases, and refused settings.</summary>
public sealed class RandLoRAFileTests : IDisposable
{
    /// <summary>PEFT's RandLoraConfig fields (the base PeftConfig fields and RandLoRA's own; no exclude_modules).</summary>
    public static readonly string[] ConfigKeys =
    {
        "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out", "inference_mode", "init_weights", "layers_pattern",
        "layers_to_transform", "modules_to_save", "peft_type", "peft_version", "projection_prng_key", "r", "randlora_alpha",
        "randlora_dropout", "revision", "save_projection", "sparse", "target_modules", "task_type", "very_sparse",
    };

    // (module, r·n lambda shape, gamma shape): min(in, out) 6 for every layer, n = 2.
    private static readonly string[] Modules = { "mid", "small", "wide" };

    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor Input() => torch.randn(new long[] { 4, 8 }, generator: new Generator(5));

    [Fact]
    public void SaveWritesPeftsKeysShapesValuesAndRandLoraConfigFields()
    {
        using var model = new RandLoRANet();
        RandomizeAdapters(model);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);

        var expected = Modules.SelectMany(m => new[] { "randlora_lambda", "randlora_gamma" }.Select(n => $"base_model.model.{m}.{n}"))
            .Append("base_model.randlora_A").Append("base_model.randlora_B");
        Assert.Equal(expected.OrderBy(k => k, StringComparer.Ordinal), Keys(weights));
        Assert.Equal(new long[] { 3, 1, 8 }, Shape(weights, "base_model.randlora_A"));
        Assert.Equal(new long[] { 10, 3, 3 }, Shape(weights, "base_model.randlora_B"));
        var adapters = model.AdaptedLayers().ToDictionary(l => l.Path, l => (RandLoRAAdapter)l.Layer.GetAdapter("default"));
        foreach (var module in Modules)
        {
            Assert.Equal(new long[] { 3, 2 }, Shape(weights, $"base_model.model.{module}.randlora_lambda"));
            Assert.Equal(new long[] { 2, 6 }, Shape(weights, $"base_model.model.{module}.randlora_gamma"));
            foreach (var (name, parameter) in adapters[module].PeftTensors())
            {
                using var stored = Read(dir, $"base_model.model.{module}.{name}");
                AssertBitwiseEqual(parameter, stored);
            }
        }

        var (a, b) = RandLoRAMethod.GenerateBases(3, 8, 10, 3);
        using (var a32 = a.to(ScalarType.Float32))
        using (var stored = Read(dir, "base_model.randlora_A")) AssertBitwiseEqual(a32, stored);
        using (var b32 = b.to(ScalarType.Float32))
        using (var stored = Read(dir, "base_model.randlora_B")) AssertBitwiseEqual(b32, stored);

        var json = Config(dir);
        Assert.Equal(ConfigKeys.Order(StringComparer.Ordinal), json.Select(p => p.Key).OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal("RANDLORA", (string?)json["peft_type"]);
        Assert.Equal(3, (int)json["r"]!);
        Assert.Equal(6.0, (double)json["randlora_alpha"]!);
        Assert.Equal(3, (int)json["projection_prng_key"]!);
        Assert.True((bool)json["save_projection"]!);
        Assert.False((bool)json["sparse"]!);
        Assert.False((bool)json["very_sparse"]!);
        Assert.Equal(0.25, (double)json["randlora_dropout"]!);
        Assert.Equal("none", (string?)json["bias"]);
        Assert.True((bool)json["init_weights"]!);
        Assert.Equal(new[] { "mid", "small", "wide" }, json["target_modules"]!.AsArray().Select(n => (string?)n).Order());
    }

    [Fact]
    public void RoundTripIsBitwiseLoadsTheFilesBasesAndCreatesANewAdapterFromTheConfig()
        => SharedTensorFileChecks.RoundTripUsesTheFilesSharedTensors(_dir, () => new RandLoRANet(), "randlora_A", "randlora_B", new RandLoRAOptions(3, 6, 0.25, 3, true), loadedTensors: 8);

    [Fact]
    public void WithoutSaveProjectionTheFileHasNoBasesAndALoadRegeneratesThem()
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        using var x = Input();
        using var saved = new RandLoRANoProjectionNet();
        saved.eval();
        RandomizeAdapters(saved);
        ModelWeights.Save(saved, baseFile);
        AdapterFiles.Save(saved, adapterDir);
        Assert.DoesNotContain(Keys(Path.Combine(adapterDir, AdapterFiles.WeightsFileName)), k => k.StartsWith("base_model.randlora_", StringComparison.Ordinal));
        Assert.False((bool)Config(adapterDir)["save_projection"]!);
        Assert.True((bool)Config(adapterDir)["sparse"]!);
        using var expected = Output(saved, x);

        using var fresh = new RandLoRANoProjectionNet();
        fresh.eval();
        ModelWeights.Load(fresh, baseFile);
        AdapterFiles.Load(fresh, adapterDir, "regenerated");
        fresh.SetActiveAdapter("regenerated");
        using (var actual = Output(fresh, x)) AssertBitwiseEqual(expected, actual);
    }

    [Fact]
    public void BasesOfAnotherShapeAreAMismatchAndNothingIsLoaded()
    {
        string adapterDir = _dir.File("adapter");
        using var model = new RandLoRANet();
        AdapterFiles.Save(model, adapterDir);
        EditWeights(adapterDir, w => w["base_model.randlora_B"] = torch.zeros(12, 3, 3));
        using var fresh = new RandLoRANet();
        var before = Snapshot(fresh);
        var ex = Assert.Throws<TensorMismatchException>(() => AdapterFiles.Load(fresh, adapterDir));
        Assert.Contains("base_model.randlora_B: file [12, 3, 3], model [10, 3, 3]", ex.Message, StringComparison.Ordinal);
        AssertUnchanged(before, fresh);
    }

    [Fact]
    public void TheSmallestConfigReadsPeftsDefaults()
    {
        var config = Parse("""{"peft_type": "RANDLORA", "init_weights": false, "fan_in_fan_out": false}""");
        Assert.Same(RandLoRAMethod.Instance, PeftMethods.ForConfig(config));
        Assert.Equal(new RandLoRAOptions(Rank: 32, Alpha: 640, Dropout: 0.0, ProjectionPrngKey: 0, SaveProjection: true, Sparse: false, VerySparse: false),
            RandLoRAMethod.Instance.ReadOptions(config, null));
        var full = Parse("""{"peft_type": "RANDLORA", "r": 8, "randlora_alpha": 160, "randlora_dropout": 0.1, "projection_prng_key": 5, "save_projection": false, "sparse": true, "very_sparse": true, "bias": "none"}""");
        var options = (RandLoRAOptions)RandLoRAMethod.Instance.ReadOptions(full, "wide");
        Assert.Equal(new RandLoRAOptions(8, 160, 0.1, 5, false, true, true), options);
        Assert.Equal("very_sparse", options.BasisKind);
    }

    [Theory]
    [InlineData("\"r\": 0", "\"r\" must be a positive integer")]
    [InlineData("\"randlora_alpha\": 0", "\"randlora_alpha\" must be in (0, ")]
    [InlineData("\"randlora_dropout\": 1.0", "\"randlora_dropout\" must be in [0, 1)")]
    [InlineData("\"bias\": \"all\"", "bias \"all\" is not supported")]
    public void SettingsOutOfRangeOrUnsupportedAreRefusedNamingTheFile(string field, string expected)
    {
        var config = Parse("{\"peft_type\": \"RANDLORA\", " + field + "}");
        var ex = Assert.Throws<AdapterFormatException>(() => RandLoRAMethod.Instance.ReadOptions(config, null));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.StartsWith("randlora.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFileWhoseRankAlphaKeyOrBasesDifferFromTheModelsAdapterIsReported()
    {
        var mismatches = RandLoRAMethod.Instance.SettingMismatches("wide", new RandLoRAOptions(8, 16, ProjectionPrngKey: 1, Sparse: true), new RandLoRAOptions(4, 16)).ToList();
        Assert.Equal(new[]
        {
            "wide: r is 8 in the config, 4 in the model",
            "wide: projection_prng_key is 1 in the config, 0 in the model",
            "wide: the bases are sparse in the config (sparse, very_sparse), dense in the model",
        }, mismatches);
        Assert.Empty(RandLoRAMethod.Instance.SettingMismatches("wide", new RandLoRAOptions(4), new RandLoRAOptions(4, Dropout: 0.5)));
    }

    private static AdapterConfig Parse(string json) => AdapterConfig.FromJson(JsonNode.Parse(json)!.AsObject(), "randlora.json");
}
