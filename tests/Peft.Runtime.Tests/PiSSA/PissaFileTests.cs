using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using Peft.Runtime.Tests.Core;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.PiSSA;

/// <summary>Two PiSSA layers (randomized SVD, 2 power iterations) declared with attributes.</summary>
public sealed partial class PissaNet : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.PiSSA, PissaIterations = 2)] private Module<Tensor, Tensor> q = Linear(6, 5);
    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.PiSSA, PissaIterations = 2)] private Module<Tensor, Tensor> v = Linear(5, 4);

    public PissaNet() : base(nameof(PissaNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var h = q.call(x);
        using var t = functional.tanh(h);
        return v.call(t);
    }
}

/// <summary>The same layers without adapters, targetable (what a load that creates the adapter adapts).</summary>
[Adaptable]
public sealed partial class PissaBaseNet : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> q = Linear(6, 5);
    private Module<Tensor, Tensor> v = Linear(5, 4);

    public PissaBaseNet() : base(nameof(PissaBaseNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var h = q.call(x);
        using var t = functional.tanh(h);
        return v.call(t);
    }
}

/// <summary>PiSSA in PEFT's files: the exact init_lora_weights value, a reload onto the original base that derives the residual
/// again (as PEFT's load does), the refused load onto the residual base and into a model whose residual differs, the base
/// checkpoint loaded after construction, and the conversion to a plain LoRA for the original base.</summary>
public sealed class PissaFileTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor Input() => torch.randn(new long[] { 3, 6 }, generator: new Generator(5));

    /// <summary>The original base (saved), the PiSSA model initialised from it (after construction: ReinitializeFromBase),
    /// its initial adapter and, after "training", its trained adapter.</summary>
    private (string BaseFile, string InitDir, string TrainedDir, PissaNet Trained) Train()
    {
        string baseFile = _dir.File("base.safetensors"), initDir = _dir.File("init"), trainedDir = _dir.File("trained");
        using (var original = new PissaBaseNet()) ModelWeights.Save(original, baseFile);
        var trained = new PissaNet();
        trained.eval();
        ModelWeights.Load(trained, baseFile);
        var ex = Assert.Throws<PeftConfigurationException>(() => trained.TrainableParameters());
        Assert.Contains("ReinitializeFromBase", ex.Message);
        trained.ReinitializeFromBase();
        AdapterFiles.Save(trained, initDir);
        RandomizeAdapters(trained, 0.3);
        AdapterFiles.Save(trained, trainedDir);
        return (baseFile, initDir, trainedDir, trained);
    }

    [Fact]
    public void ConfigHasPeftsValueAndAReloadOntoTheOriginalBaseDerivesTheResidualAgain()
    {
        var (baseFile, _, trainedDir, trained) = Train();
        using var _t = trained;
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(trainedDir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("pissa_niter_2", config["init_lora_weights"]!.GetValue<string>());
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());

        using var x = Input();
        using var expected = Output(trained, x);
        using var fresh = new PissaBaseNet();
        ModelWeights.Load(fresh, baseFile);
        using (var atBase = Output(fresh, x))
        {
            AdapterFiles.Load(fresh, trainedDir);
            using var actual = Output(fresh, x);
            TensorAssert.Close(expected, actual, 1e-5);
            TensorAssert.NotClose(atBase, actual, 1e-3);
        }

        var layer = fresh.AdaptedLayers().First().Layer;
        Assert.True(layer.HoldsResidualBase);
        Assert.Equal("pissa_niter_2", ((LoRAAdapter)layer.GetAdapter("default")).Options.Describe().Single(d => d.Name == "init_lora_weights").Value);
    }

    [Fact]
    public void ALoadOntoTheResidualBaseIsRefusedAndLeavesTheModelUnchanged()
    {
        var (_, _, trainedDir, trained) = Train();
        using var _t = trained;
        string residualFile = _dir.File("residual.safetensors");
        ModelWeights.Save(trained, residualFile);
        using var residual = new PissaBaseNet();
        ModelWeights.Load(residual, residualFile);
        var before = Snapshot(residual);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(residual, trainedDir));
        Assert.Contains("residual", ex.Message);
        Assert.Contains("'q'", ex.Message);
        AssertUnchanged(before, residual);

        // Another model's base: neither the original nor the residual.
        using var other = new PissaBaseNet();
        var foreign = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(other, trainedDir));
        Assert.Contains("not the one this adapter was initialised from", foreign.Message);
    }

    [Fact]
    public void ALoadIntoAnAdapterInitialisedFromAnotherBaseIsRefused()
    {
        var (_, _, trainedDir, trained) = Train();
        using var _t = trained;
        using var constructed = new PissaNet();           // PiSSA ran on its own random weights
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(constructed, trainedDir));
        Assert.Contains("ReinitializeFromBase", ex.Message);
    }

    [Fact]
    public void AFailedLoadThatCreatesTheAdapterPutsTheBaseBack()
    {
        var (baseFile, _, trainedDir, trained) = Train();
        using var _t = trained;
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(trainedDir, AdapterFiles.ConfigFileName)))!.AsObject();
        config["lora_alpha"] = 5;       // the files' A and B no longer fit (a settings check after the init has run)
        config["r"] = 3;
        File.WriteAllText(Path.Combine(trainedDir, AdapterFiles.ConfigFileName), config.ToJsonString());
        using var fresh = new PissaBaseNet();
        ModelWeights.Load(fresh, baseFile);
        var before = Snapshot(fresh);
        Assert.ThrowsAny<PeftFileException>(() => AdapterFiles.Load(fresh, trainedDir));
        AssertUnchanged(before, fresh);
    }

    [Fact]
    public void TheConvertedAdapterOnTheOriginalBaseGivesTheTrainedOutputs()
    {
        var (baseFile, initDir, trainedDir, trained) = Train();
        using var _t = trained;
        string converted = _dir.File("converted");
        Assert.Equal(2, LoRAConversion.ToOriginalBase(trainedDir, initDir, converted));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(converted, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(8.0, config["lora_alpha"]!.GetValue<double>());
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());

        using var x = Input();
        using var expected = Output(trained, x);
        using var original = new PissaBaseNet();
        ModelWeights.Load(original, baseFile);
        AdapterFiles.Load(original, converted);
        Assert.False(original.AdaptedLayers().First().Layer.HoldsResidualBase);
        using var actual = Output(original, x);
        TensorAssert.Close(expected, actual, 1e-5);

        // The initial adapter of another run is refused: its recorded residual differs.
        string otherInit = _dir.File("other-init");
        using (var other = new PissaNet()) AdapterFiles.Save(other, otherInit);
        var ex = Assert.Throws<AdapterFormatException>(() => LoRAConversion.ToOriginalBase(trainedDir, otherInit, _dir.File("bad")));
        Assert.Contains("another base weight", ex.Message);
    }

    [Fact]
    public void UnsupportedInitValuesAreRefusedNamingTheField()
    {
        var (baseFile, _, trainedDir, trained) = Train();
        using var _t = trained;
        foreach (var value in new[] { "pissa_niter_0", "pissa_niter_x", "orthogonal", "lora_ga" })
        {
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(trainedDir, AdapterFiles.ConfigFileName)))!.AsObject();
            config["init_lora_weights"] = value;
            File.WriteAllText(Path.Combine(trainedDir, AdapterFiles.ConfigFileName), config.ToJsonString());
            using var fresh = new PissaBaseNet();
            ModelWeights.Load(fresh, baseFile);
            var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, trainedDir));
            Assert.Contains("init_lora_weights", ex.Message);
        }
    }
}
