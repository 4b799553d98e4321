using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two CorDA layers (KPM; PEFT stores one corda_config per adapter) and a plain head.</summary>
public sealed partial class CorDAMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.CorDA, CorDAMethod = CorDAMethod.Kpm)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [LoRA(rank: 3, alpha: 3, Init = LoRAInit.CorDA, CorDAMethod = CorDAMethod.Kpm)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public CorDAMergeNet() : base(nameof(CorDAMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c>, <c>peft inspect</c> and <c>peft convert</c> on a CorDA adapter: the merge adds the update to the
/// residual base (the file's recorded residual; the original base is refused, since a merge cannot repeat the calibration), so it
/// equals the model's merge; the conversion (PEFT's path_initial_model_for_weight_conversion) gives a plain LoRA that computes the
/// trained model on the original base.</summary>
public sealed class CorDACliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Saves the original base, calibrates a CorDA model on it, saves the residual base and the initial adapter, then
    /// "trains" (moves the factors) and saves the trained adapter.</summary>
    private CorDAMergeNet SaveModel()
    {
        Seeding.SetSeed(17);
        var model = new CorDAMergeNet();
        ModelWeights.Save(model, _dir["original.safetensors"]);
        model.PreprocessCorDA(_ =>
        {
            for (int i = 0; i < 4; i++)
            {
                using var x = randn(new long[] { 6, CorDAMergeNet.In }, generator: new Generator((ulong)(60 + i)));
                using var y = model.call(x);
            }
        });
        ModelWeights.Save(model, _dir["base.safetensors"]);   // the residual base
        AdapterFiles.Save(model, _dir["initial"]);
        MethodMergeChecks.SimulateTraining(model, 117);

        AdapterFiles.Save(model, _dir["adapter"]);
        return model;
    }

    [Fact]
    public void Merge_adds_the_update_to_the_residual_base_as_the_model_does()
    {
        using var model = SaveModel();
        using var x = randn(5, CorDAMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        var (merged, residual) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");
        Assert.True((merged["fc1.weight"] - residual["fc1.weight"]).abs().max().item<float>() > 1e-4);
        Assert.Equal(0f, (merged["head.weight"] - residual["head.weight"]).abs().max().item<float>());

        using var fresh = new CorDAMergeNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, _dir, x, adapted);
    }

    [Fact]
    public void Merge_onto_the_original_base_is_refused_with_the_fix()
    {
        using var model = SaveModel();
        var result = CliRunner.Run("merge", "--base", _dir["original.safetensors"], "--adapter", _dir["adapter"], "--output", _dir["merged.safetensors"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("calibration data", result.Error);
        Assert.Contains("peft convert", result.Error);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
    }

    [Fact]
    public void Convert_gives_a_plain_LoRA_for_the_original_base()
    {
        using var model = SaveModel();
        var result = CliRunner.Run("convert", "--adapter", _dir["adapter"], "--initial", _dir["initial"], "--output", _dir["converted"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir["converted"], AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());

        // The original base plus the converted adapter computes the trained CorDA model.
        using var x = randn(5, CorDAMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        using var plain = new CorDAMergeNet();
        plain.DeleteAdapter(AdapterNames.Default);
        ModelWeights.Load(plain, _dir["original.safetensors"]);
        AdapterFiles.Load(plain, _dir["converted"]);
        plain.eval();
        using var y = plain.call(x);
        double diff = (y - adapted).abs().max().item<float>();
        Assert.True(diff < 1e-4, $"the converted adapter on the original base differs by {diff}");
    }

    [Fact]
    public void Inspect_shows_the_initialisation_and_corda_method()
    {
        using var model = SaveModel();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        var fc1 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc1")!;
        Assert.Equal("corda", fc1["init_lora_weights"]!.GetValue<string>());
        Assert.Equal("kpm", fc1["corda_method"]!.GetValue<string>());
    }
}
