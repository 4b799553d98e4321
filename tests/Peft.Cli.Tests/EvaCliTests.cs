using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two EVA layers (r = 2, alpha 4) and a plain head; the calibration feeds each layer its own rows.</summary>
public sealed partial class EvaMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.EVA)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.EVA)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public EvaMergeNet() : base(nameof(EvaMergeNet)) => InitializePeft();

    /// <summary>Runs fc1 on <paramref name="x1"/> and fc2 on <paramref name="x2"/>.</summary>
    public void Feed(Tensor x1, Tensor x2)
    {
        fc1.call(x1).Dispose();
        fc2.call(x2).Dispose();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>The same layers without adapters.</summary>
[Adaptable]
public sealed partial class EvaBaseNet : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> fc1 = Linear(EvaMergeNet.In, 32);
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);
    private Module<Tensor, Tensor> head = Linear(24, 3);

    public EvaBaseNet() : base(nameof(EvaBaseNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on an EVA adapter whose ranks EVA redistributed: the file's
/// rank_pattern/alpha_pattern give each layer its rank and alpha, and the merge is plain LoRA math (EVA leaves the base as it
/// is), equal to the model's merge.</summary>
public sealed class EvaCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Rows ± a_i e_i: fc1's amplitudes 10, 1 (ratios 0.990, 0.010), fc2's 8, 7, ..., 1 (0.314, 0.240, 0.176, ...); budget
    /// 4, at most 4 each ⇒ fc1 rank 1 (alpha 4·1/2 = 2), fc2 rank 3 (alpha 6).</summary>
    private static Tensor Axes(int width, params double[] amplitudes)
    {
        var data = new float[2 * amplitudes.Length, width];
        for (int i = 0; i < amplitudes.Length; i++)
        {
            data[2 * i, i] = (float)amplitudes[i];
            data[2 * i + 1, i] = (float)-amplitudes[i];
        }

        return torch.tensor(data);
    }

    private EvaMergeNet SaveModel()
    {
        Seeding.SetSeed(17);
        var model = new EvaMergeNet();
        using var x1 = Axes(EvaMergeNet.In, 10, 1);
        using var x2 = Axes(32, 8, 7, 6, 5, 4, 3, 2, 1);
        var result = model.InitializeEva(new[] { 0 }, (_, _) => model.Feed(x1, x2));
        Assert.Equal(new[] { ("fc1", 1, 2.0), ("fc2", 3, 6.0) }, result.Layers.Select(l => (l.Path, l.Rank, l.Alpha)));
        MethodMergeChecks.RandomizeAndSave(model, _dir, 131);
        return model;
    }

    [Fact]
    public void Merge_runs_the_redistributed_LoRA_math()
    {
        using var model = SaveModel();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir["adapter"], AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.True(JsonNode.DeepEquals(new JsonObject { ["fc1"] = 1, ["fc2"] = 3 }, config["rank_pattern"]), config["rank_pattern"]!.ToJsonString());
        Assert.True(JsonNode.DeepEquals(new JsonObject { ["fc1"] = 2.0, ["fc2"] = 6.0 }, config["alpha_pattern"]), config["alpha_pattern"]!.ToJsonString());
        using var x = randn(5, EvaMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");
        Assert.True((merged["fc2.weight"] - original["fc2.weight"]).abs().max().item<float>() > 1e-4);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());

        using var fresh = new EvaBaseNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, _dir, x, adapted);
    }

    [Fact]
    public void Inspect_shows_each_layers_rank_and_the_eva_settings()
    {
        using var model = SaveModel();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        JsonNode Module(string name) => json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == name)!;
        Assert.Equal("eva", Module("fc1")["init_lora_weights"]!.GetValue<string>());
        Assert.Equal(1, Module("fc1")["r"]!.GetValue<int>());
        Assert.Equal(3, Module("fc2")["r"]!.GetValue<int>());
        Assert.Equal(2.0, Module("fc2")["scaling"]!.GetValue<double>());
        Assert.Equal(2, Module("fc2")["eva_declared_r"]!.GetValue<int>());
        Assert.Equal(2.0, Module("fc2")["eva_rho"]!.GetValue<double>());
    }
}
