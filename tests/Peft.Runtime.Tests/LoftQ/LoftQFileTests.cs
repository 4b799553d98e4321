using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.LoftQ;

/// <summary>Two LoftQ layers (NF4, 2 iterations) declared with attributes.</summary>
public sealed partial class LoftQNet : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.LoftQ, LoftQIterations = 2)] private Module<Tensor, Tensor> q = Linear(16, 8);
    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.LoftQ, LoftQIterations = 2)] private Module<Tensor, Tensor> v = Linear(8, 8);

    public LoftQNet() : base(nameof(LoftQNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var h = q.call(x);
        using var t = functional.tanh(h);
        return v.call(t);
    }
}

/// <summary>The same layers without adapters, targetable (what a load that creates the adapter adapts).</summary>
[Adaptable]
public sealed partial class LoftQBaseNet : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> q = Linear(16, 8);
    private Module<Tensor, Tensor> v = Linear(8, 8);

    public LoftQBaseNet() : base(nameof(LoftQBaseNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var h = q.call(x);
        using var t = functional.tanh(h);
        return v.call(t);
    }
}

/// <summary>LoftQ in PEFT's files: init_lora_weights "loftq" with PEFT's loftq_config {loftq_bits, loftq_iter}, a reload onto
/// the original base that quantizes it again (as PEFT's load runs loftq_init), the stored base after QuantizeBase, malformed
/// loftq_config values refused by field, and the conversion to a plain LoRA refused (PEFT converts PiSSA/OLoRA/CorDA only).</summary>
public sealed class LoftQFileTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor Input() => torch.randn(new long[] { 3, 16 }, generator: new Generator(5));

    private (string BaseFile, string TrainedDir, LoftQNet Trained) Train()
    {
        string baseFile = _dir.File("base.safetensors"), trainedDir = _dir.File("trained");
        using (var original = new LoftQBaseNet()) ModelWeights.Save(original, baseFile);
        var trained = new LoftQNet();
        trained.eval();
        ModelWeights.Load(trained, baseFile);
        trained.ReinitializeFromBase();
        RandomizeAdapters(trained, 0.3);
        AdapterFiles.Save(trained, trainedDir);
        return (baseFile, trainedDir, trained);
    }

    private static Tensor QWeight(Module model) => model.named_parameters().First(p => p.name == "q.weight").parameter;

    private static string ConfigPath(string dir) => Path.Combine(dir, AdapterFiles.ConfigFileName);

    [Fact]
    public void ConfigHasPeftsFieldsAndAReloadOntoTheOriginalBaseQuantizesItAgain()
    {
        var (baseFile, trainedDir, trained) = Train();
        using var _t = trained;
        var config = JsonNode.Parse(File.ReadAllText(ConfigPath(trainedDir)))!.AsObject();
        Assert.Equal("loftq", config["init_lora_weights"]!.GetValue<string>());
        Assert.True(JsonNode.DeepEquals(new JsonObject { ["loftq_bits"] = 4, ["loftq_iter"] = 2 }, config["loftq_config"]), config["loftq_config"]?.ToJsonString());

        using var x = Input();
        using var expected = Output(trained, x);
        using var fresh = new LoftQBaseNet();
        ModelWeights.Load(fresh, baseFile);
        using var original = QWeight(fresh).clone();
        AdapterFiles.Load(fresh, trainedDir);
        var layer = fresh.AdaptedLayers().First().Layer;
        using var actual = Output(fresh, x);
        TensorAssert.Close(expected, actual, 1e-5);
        Assert.True(layer.HoldsResidualBase);
        Assert.True(TensorAssert.MaxAbsDiff(original, QWeight(fresh)) > 1e-4, "the load did not replace the base by LoftQ's Q");

        // QLoRA + LoftQ: the base stored as exactly that Q keeps the outputs.
        fresh.QuantizeBase(QuantizationFormat.NF4);
        using var quantized = Output(fresh, x);
        TensorAssert.Close(expected, quantized, 1e-5);
    }

    [Theory]
    [InlineData(null, "needs a loftq_config")]
    [InlineData("""{"loftq_bits": 2, "loftq_iter": 1}""", "loftq_bits is 2")]
    [InlineData("""{"loftq_bits": 4, "loftq_iter": 0}""", "loftq_iter is 0")]
    [InlineData("""{"loftq_bits": "4", "loftq_iter": 1}""", "loftq_bits must be an integer")]
    public void MalformedLoftQConfigsAreRefusedNamingTheField(string? loftq, string message)
    {
        var (baseFile, trainedDir, trained) = Train();
        using var _t = trained;
        var config = JsonNode.Parse(File.ReadAllText(ConfigPath(trainedDir)))!.AsObject();
        config["loftq_config"] = loftq is null ? new JsonObject() : JsonNode.Parse(loftq);
        File.WriteAllText(ConfigPath(trainedDir), config.ToJsonString());
        using var fresh = new LoftQBaseNet();
        ModelWeights.Load(fresh, baseFile);
        using var before = QWeight(fresh).clone();
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, trainedDir));
        Assert.Contains("loftq_config", ex.Message);
        Assert.Contains(message, ex.Message);
        TensorAssert.Equal(before, QWeight(fresh));
    }

    [Fact]
    public void ConversionToAPlainLoRAIsRefused()
    {
        var (_, trainedDir, trained) = Train();
        using var _t = trained;
        var ex = Assert.Throws<AdapterFormatException>(() => LoRAConversion.ToOriginalBase(trainedDir, trainedDir, _dir.File("converted")));
        Assert.Contains("LoftQ", ex.Message);
        Assert.False(Directory.Exists(_dir.File("converted")) && Directory.EnumerateFileSystemEntries(_dir.File("converted")).Any());
    }

    [Fact]
    public void ALoadIntoAModelWithOtherLoftQSettingsIsRefused()
    {
        var (baseFile, trainedDir, trained) = Train();
        using var _t = trained;
        var config = JsonNode.Parse(File.ReadAllText(ConfigPath(trainedDir)))!.AsObject();
        config["loftq_config"] = new JsonObject { ["loftq_bits"] = 8, ["loftq_iter"] = 2 };
        File.WriteAllText(ConfigPath(trainedDir), config.ToJsonString());
        using var model = new LoftQNet();
        ModelWeights.Load(model, baseFile);
        model.ReinitializeFromBase();
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, trainedDir));
        Assert.Contains("loftq_bits 8", ex.Message);
    }
}
