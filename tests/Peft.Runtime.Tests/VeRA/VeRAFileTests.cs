using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.VeRA;

/// <summary>Three VeRA layers (largest in 8, largest out 10), declared with attributes.</summary>
public sealed partial class VeRANet : Module<Tensor, Tensor>
{
    [VeRA(rank: 4, Dropout = 0.25, DInitial = 0.5, ProjectionPrngKey = 3)] private Module<Tensor, Tensor> small = Linear(8, 6);
    [VeRA(rank: 4, Dropout = 0.25, DInitial = 0.5, ProjectionPrngKey = 3)] private Module<Tensor, Tensor> mid = Linear(6, 6);
    [VeRA(rank: 4, Dropout = 0.25, DInitial = 0.5, ProjectionPrngKey = 3)] private Module<Tensor, Tensor> wide = Linear(6, 10);

    public VeRANet() : base(nameof(VeRANet))
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

/// <summary>The same layers without projections in its files (save_projection false).</summary>
public sealed partial class VeRANoProjectionNet : Module<Tensor, Tensor>
{
    [VeRA(rank: 4, SaveProjection = false)] private Module<Tensor, Tensor> small = Linear(8, 6);
    [VeRA(rank: 4, SaveProjection = false)] private Module<Tensor, Tensor> wide = Linear(6, 10);

    public VeRANoProjectionNet() : base(nameof(VeRANoProjectionNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return wide.call(functional.tanh(small.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>VeRA in PEFT's file format: per-module <c>vera_lambda_b</c>/<c>vera_lambda_d</c>, the model-level
/// <c>base_model.vera_A</c>/<c>base_model.vera_B</c> (PEFT's get_peft_model_state_dict drops the adapter name), VeraConfig's
/// fields, bitwise round trips, regeneration when the file has no projections, and refused settings.</summary>
public sealed class VeRAFileTests : IDisposable
{
    /// <summary>PEFT's VeraConfig fields (the base PeftConfig fields and VeRA's own; VeraConfig has no exclude_modules).</summary>
    public static readonly string[] ConfigKeys =
    {
        "auto_mapping", "base_model_name_or_path", "bias", "d_initial", "fan_in_fan_out", "inference_mode", "init_weights",
        "layers_pattern", "layers_to_transform", "modules_to_save", "peft_type", "peft_version", "projection_prng_key", "r", "revision",
        "save_projection", "target_modules", "task_type", "vera_dropout",
    };

    private static readonly (string Module, long Out)[] Layers = { ("mid", 6), ("small", 6), ("wide", 10) };

    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor Input() => torch.randn(new long[] { 4, 8 }, generator: new Generator(5));

    [Fact]
    public void SaveWritesPeftsKeysShapesValuesAndVeraConfigFields()
    {
        using var model = new VeRANet();
        RandomizeAdapters(model);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(model, dir);
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);

        var expected = Layers.SelectMany(l => new[] { "vera_lambda_b", "vera_lambda_d" }.Select(n => $"base_model.model.{l.Module}.{n}"))
            .Append("base_model.vera_A").Append("base_model.vera_B");
        Assert.Equal(expected.OrderBy(k => k, StringComparer.Ordinal), Keys(weights));
        Assert.Equal(new long[] { 4, 8 }, Shape(weights, "base_model.vera_A"));
        Assert.Equal(new long[] { 10, 4 }, Shape(weights, "base_model.vera_B"));
        var adapters = model.AdaptedLayers().ToDictionary(l => l.Path, l => (VeRAAdapter)l.Layer.GetAdapter("default"));
        foreach (var (module, outF) in Layers)
        {
            Assert.Equal(new[] { outF }, Shape(weights, $"base_model.model.{module}.vera_lambda_b"));
            Assert.Equal(new long[] { 4 }, Shape(weights, $"base_model.model.{module}.vera_lambda_d"));
            foreach (var (name, parameter) in adapters[module].PeftTensors())
            {
                using var stored = Read(dir, $"base_model.model.{module}.{name}");
                AssertBitwiseEqual(parameter, stored);
            }
        }

        var (a, b) = VeRAMethod.GenerateProjections(4, 8, 10, 3);
        using (var stored = Read(dir, "base_model.vera_A")) AssertBitwiseEqual(a, stored);
        using (var stored = Read(dir, "base_model.vera_B")) AssertBitwiseEqual(b, stored);

        var json = Config(dir);
        Assert.Equal(ConfigKeys.Order(StringComparer.Ordinal), json.Select(p => p.Key).OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal("VERA", (string?)json["peft_type"]);
        Assert.Equal(4, (int)json["r"]!);
        Assert.Equal(3, (int)json["projection_prng_key"]!);
        Assert.True((bool)json["save_projection"]!);
        Assert.Equal(0.25, (double)json["vera_dropout"]!);
        Assert.Equal(0.5, (double)json["d_initial"]!);
        Assert.Equal("none", (string?)json["bias"]);
        Assert.False((bool)json["fan_in_fan_out"]!);
        Assert.True((bool)json["init_weights"]!);
        Assert.Equal(new[] { "mid", "small", "wide" }, json["target_modules"]!.AsArray().Select(n => (string?)n).Order());
    }

    [Fact]
    public void RoundTripIsBitwiseLoadsTheFilesProjectionsAndCreatesANewAdapterFromTheConfig()
        => SharedTensorFileChecks.RoundTripUsesTheFilesSharedTensors(_dir, () => new VeRANet(), "vera_A", "vera_B", new VeRAOptions(4, 0.25, 0.5, 3, true), loadedTensors: 8);

    [Fact]
    public void WithoutSaveProjectionTheFileHasNoProjectionsAndALoadRegeneratesThem()
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        using var x = Input();
        using var saved = new VeRANoProjectionNet();
        saved.eval();
        RandomizeAdapters(saved);
        ModelWeights.Save(saved, baseFile);
        AdapterFiles.Save(saved, adapterDir);
        Assert.DoesNotContain(Keys(Path.Combine(adapterDir, AdapterFiles.WeightsFileName)), k => k.Contains("vera_A", StringComparison.Ordinal) || k.Contains("vera_B", StringComparison.Ordinal));
        Assert.False((bool)Config(adapterDir)["save_projection"]!);
        using var expected = Output(saved, x);

        using var fresh = new VeRANoProjectionNet();
        fresh.eval();
        ModelWeights.Load(fresh, baseFile);
        AdapterFiles.Load(fresh, adapterDir, "regenerated");
        fresh.SetActiveAdapter("regenerated");
        using (var actual = Output(fresh, x)) AssertBitwiseEqual(expected, actual);
    }

    [Fact]
    public void ProjectionsOfAnotherShapeAreAMismatchAndNothingIsLoaded()
    {
        string adapterDir = _dir.File("adapter");
        using var model = new VeRANet();
        AdapterFiles.Save(model, adapterDir);
        EditWeights(adapterDir, w => w["base_model.vera_A"] = torch.zeros(4, 12));
        using var fresh = new VeRANet();
        var before = Snapshot(fresh);
        var ex = Assert.Throws<TensorMismatchException>(() => AdapterFiles.Load(fresh, adapterDir));
        Assert.Contains("base_model.vera_A: file [4, 12], model [4, 8]", ex.Message, StringComparison.Ordinal);
        AssertUnchanged(before, fresh);
    }

    [Fact]
    public void TheMergeFingerprintCoversTheSavedProjections()
    {
        // Two adapters with the same λ vectors and other projections compute different updates.
        using var model = new VeRANet();
        string before = MergedAdapterMetadata.Fingerprint(model, AdapterNames.Default);
        var set = ((VeRAAdapter)model.AdaptedLayers().First().Layer.GetAdapter(AdapterNames.Default)).SharedTensors!;
        using (torch.no_grad()) set["vera_A"].mul_(2);
        Assert.NotEqual(before, MergedAdapterMetadata.Fingerprint(model, AdapterNames.Default));
    }

    [Fact]
    public void TheSmallestConfigReadsPeftsDefaults()
    {
        var config = Parse("""{"peft_type": "VERA", "init_weights": false, "fan_in_fan_out": false}""");
        Assert.Same(VeRAMethod.Instance, PeftMethods.ForConfig(config));
        Assert.Equal(new VeRAOptions(Rank: 256, Dropout: 0.0, DInitial: 0.1, ProjectionPrngKey: 0, SaveProjection: true), VeRAMethod.Instance.ReadOptions(config, null));
        var full = Parse("""{"peft_type": "VERA", "r": 32, "vera_dropout": 0.1, "d_initial": 1.0, "projection_prng_key": 5, "save_projection": false, "bias": "none"}""");
        Assert.Equal(new VeRAOptions(32, 0.1, 1.0, 5, false), VeRAMethod.Instance.ReadOptions(full, "wide"));
    }

    [Theory]
    [InlineData("\"r\": 0", "\"r\" must be a positive integer")]
    [InlineData("\"vera_dropout\": 1.0", "\"vera_dropout\" must be in [0, 1)")]
    [InlineData("\"bias\": \"all\"", "bias \"all\" is not supported")]
    public void SettingsOutOfRangeOrUnsupportedAreRefusedNamingTheFile(string field, string expected)
    {
        var config = Parse("{\"peft_type\": \"VERA\", " + field + "}");
        var ex = Assert.Throws<AdapterFormatException>(() => VeRAMethod.Instance.ReadOptions(config, null));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.StartsWith("vera.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFileWhoseRankOrKeyDiffersFromTheModelsAdapterIsReported()
    {
        var mismatches = VeRAMethod.Instance.SettingMismatches("wide", new VeRAOptions(8, ProjectionPrngKey: 1), new VeRAOptions(4)).ToList();
        Assert.Equal(new[] { "wide: r is 8 in the config, 4 in the model", "wide: projection_prng_key is 1 in the config, 0 in the model" }, mismatches);
        Assert.Empty(VeRAMethod.Instance.SettingMismatches("wide", new VeRAOptions(4), new VeRAOptions(4, Dropout: 0.5, DInitial: 1)));
    }

    private static AdapterConfig Parse(string json) => AdapterConfig.FromJson(JsonNode.Parse(json)!.AsObject(), "vera.json");
}
