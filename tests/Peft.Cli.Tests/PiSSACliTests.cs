using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two PiSSA layers (full SVD) and a plain head.</summary>
public sealed partial class PiSSAMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.PiSSA)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [LoRA(rank: 3, alpha: 3, Init = LoRAInit.PiSSA)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public PiSSAMergeNet() : base(nameof(PiSSAMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>The same layers without adapters (the original base model).</summary>
[Adaptable]
public sealed partial class PiSSABaseNet : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> fc1 = Linear(PiSSAMergeNet.In, 32);
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);
    private Module<Tensor, Tensor> head = Linear(24, 3);

    public PiSSABaseNet() : base(nameof(PiSSABaseNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c>, <c>peft inspect</c> and <c>peft convert</c> on a PiSSA adapter: the file-level merge derives the
/// residual from the original base file (the same SVD the model ran) and adds the update; a residual base file is refused;
/// the converted plain LoRA on the original base gives the trained outputs.</summary>
public sealed class PiSSACliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Original base → base.safetensors; the PiSSA model initialised from it → init (before) and adapter (after "training").</summary>
    private PiSSAMergeNet SaveModel()
    {
        Seeding.SetSeed(12);
        using (var original = new PiSSABaseNet()) ModelWeights.Save(original, _dir["base.safetensors"]);
        var model = new PiSSAMergeNet();
        ModelWeights.Load(model, _dir["base.safetensors"]);
        model.ReinitializeFromBase();
        AdapterFiles.Save(model, _dir["init"]);
        MethodMergeChecks.SimulateTraining(model, 112);

        AdapterFiles.Save(model, _dir["adapter"]);
        return model;
    }

    [Fact]
    public void Merge_derives_the_residual_from_the_original_base_and_refuses_the_residual_base()
    {
        using var model = SaveModel();
        using var x = randn(5, PiSSAMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        ModelWeights.Save(model, _dir["residual.safetensors"]);
        MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]", "init_lora_weights pissa");

        using var fresh = new PiSSABaseNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, _dir, x, adapted);

        var refused = CliRunner.Run("merge", "--base", _dir["residual.safetensors"], "--adapter", _dir["adapter"], "--output", _dir["bad.safetensors"]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("residual", refused.Error);
        Assert.Contains("'fc1'", refused.Error);
        Assert.False(File.Exists(_dir["bad.safetensors"]));
    }

    [Fact]
    public void Convert_gives_a_plain_lora_that_on_the_original_base_computes_the_trained_outputs()
    {
        using var model = SaveModel();
        using var x = randn(5, PiSSAMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        var result = CliRunner.Run("convert", "--adapter", _dir["adapter"], "--initial", _dir["init"], "--output", _dir["converted"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("2 module(s) converted", result.Output);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir["converted"], AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(6, config["rank_pattern"]!["fc2"]!.GetValue<int>());
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());

        using var original = new PiSSABaseNet();
        ModelWeights.Load(original, _dir["base.safetensors"]);
        AdapterFiles.Load(original, _dir["converted"]);
        original.eval();
        using (no_grad())
        using (var y = original.call(x))
        {
            double diff = (y - adapted).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"outputs differ by {diff}");
        }

        var swapped = CliRunner.Run("convert", "--adapter", _dir["adapter"], "--initial", _dir["nothing"], "--output", _dir["c2"]);
        Assert.NotEqual(0, swapped.ExitCode);
        Assert.Contains("nothing", swapped.Error);
    }

    [Fact]
    public void Inspect_shows_the_initialisation()
    {
        using var model = SaveModel();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("LORA", json["peft_type"]!.GetValue<string>());
        var fc2 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(3, fc2["r"]!.GetValue<int>());
        Assert.Equal("pissa", fc2["init_lora_weights"]!.GetValue<string>());
    }
}
