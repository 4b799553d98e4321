using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two linear layers and a head, targetable: the base model of the SVFit and LoLDU CLI tests.</summary>
[Adaptable]
public sealed partial class SvdCliNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    private Module<Tensor, Tensor> fc1 = Linear(In, 32);
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);
    private Module<Tensor, Tensor> head = Linear(24, 3);

    public SvdCliNet() : base(nameof(SvdCliNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }

    /// <summary>The original base → <c>base.safetensors</c>; the adapter added by targeting fc1 and fc2 (the base becomes the
    /// residual), its trainable values moved off their initialisation → <c>adapter</c>.</summary>
    internal static SvdCliNet SaveAdapted(TempDir dir, PeftAdapterOptions options)
    {
        Seeding.SetSeed(12);
        var model = new SvdCliNet();
        ModelWeights.Save(model, dir["base.safetensors"]);
        model.ApplyTargets(new PeftTargets(TargetModules.Names("fc1", "fc2"), options));
        using (var generator = new Generator(112))
        using (no_grad())
        {
            foreach (var p in model.TrainableParameters())
            {
                using var noise = randn(p.shape, generator: generator) * 0.3;
                p.add_(noise);
            }
        }

        AdapterFiles.Save(model, dir["adapter"]);
        return model;
    }

    /// <summary><c>peft merge</c> equals the model's merge, the merged file gives the adapted outputs, and the residual base
    /// file is refused naming the module.</summary>
    internal static void AssertMergeRunsTheModelsMath(TempDir dir, PeftAdapterOptions options)
    {
        using var model = SaveAdapted(dir, options);
        using var x = randn(5, In);
        model.eval();
        using var adapted = model.call(x);
        ModelWeights.Save(model, dir["residual.safetensors"]);
        MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");

        using var fresh = new SvdCliNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, dir, x, adapted);

        var refused = CliRunner.Run("merge", "--base", dir["residual.safetensors"], "--adapter", dir["adapter"], "--output", dir["bad.safetensors"]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("residual", refused.Error);
        Assert.Contains("'fc1'", refused.Error);
        Assert.False(File.Exists(dir["bad.safetensors"]));
    }
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on SVFit adapters: the file-level merge takes the SVD of the original base
/// file (as the model did), keeps its residual and adds <c>U_r diag(σ) V_rᵀ</c> from the file.</summary>
public sealed class SVFitCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Merge_with_an_explicit_rank_runs_the_models_math() => SvdCliNet.AssertMergeRunsTheModelsMath(_dir, new SVFitOptions(Rank: 4));

    [Fact]
    public void Merge_with_the_rank_chosen_by_energy_runs_the_models_math() => SvdCliNet.AssertMergeRunsTheModelsMath(_dir, new SVFitOptions(EnergyThreshold: 0.9));

    [Fact]
    public void Inspect_shows_the_format_and_each_layers_rank()
    {
        using var model = SvdCliNet.SaveAdapted(_dir, new SVFitOptions(EnergyThreshold: 0.9));
        var ranks = model.AdaptedLayers().ToDictionary(l => l.Path, l => ((SVFitAdapter)l.Layer.GetAdapter("default")).Rank);
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("SVFIT", json["peft_type"]!.GetValue<string>());
        foreach (var (path, rank) in ranks)
        {
            var module = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == path)!;
            Assert.Equal(rank, module["r"]!.GetValue<int>());
        }
    }
}
