using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two HiRA layers with different ranks (the saved config carries rank_pattern) and a plain head.</summary>
public sealed partial class HiRAMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [HiRA(rank: 2)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [HiRA(rank: 3)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public HiRAMergeNet() : base(nameof(HiRAMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on a HiRA adapter: the file-level merge runs HiRA's own math,
/// <c>W ⊙ (1 + B A)</c>, with the base weight read from the base file.</summary>
public sealed class HiRACliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private HiRAMergeNet SaveModel()
    {
        Seeding.SetSeed(12);
        var model = new HiRAMergeNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 112); // hira_B starts at zero: a zero update otherwise
        return model;
    }

    [Fact]
    public void Merge_equals_the_models_merge_and_gives_the_adapted_outputs()
    {
        using var model = SaveModel();
        using var x = randn(5, HiRAMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");

        // The merged weight is W ⊙ (1 + B A) of the base file's W: its ratio to W is the factor, not an added term.
        Assert.True((merged["fc2.weight"] - original["fc2.weight"]).abs().max().item<float>() > 1e-2);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());
        Assert.Equal(0f, (merged["fc2.bias"] - original["fc2.bias"]).abs().max().item<float>());

        Seeding.SetSeed(99);
        using var fresh = new HiRAMergeNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, _dir, x, adapted);
    }

    [Fact]
    public void Inspect_lists_the_hira_tensors_the_settings_per_module_and_the_parameter_count()
    {
        using var model = SaveModel();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("HIRA", json["peft_type"]!.GetValue<string>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(4, tensors.Count);
        Assert.Equal(new long[] { 2, 16 }, tensors["base_model.model.fc1.hira_A"]);
        Assert.Equal(new long[] { 32, 2 }, tensors["base_model.model.fc1.hira_B"]);
        Assert.Equal(new long[] { 3, 32 }, tensors["base_model.model.fc2.hira_A"]);
        Assert.Equal(new long[] { 24, 3 }, tensors["base_model.model.fc2.hira_B"]);
        var fc2 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(3, fc2["r"]!.GetValue<int>());
        Assert.Equal(0.0, fc2["hira_dropout"]!.GetValue<double>());
        // r·(in + out): 2·(16 + 32) + 3·(32 + 24).
        Assert.Equal(2 * (16 + 32) + 3 * (32 + 24), json["trainable_parameters"]!.GetValue<long>());
    }
}
