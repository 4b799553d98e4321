using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two LoHa layers with different ranks and alphas (the saved config carries rank_pattern/alpha_pattern) and a plain head.</summary>
public sealed partial class LoHaMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [LoHa(rank: 2, alpha: 4)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [LoHa(rank: 3, alpha: 6)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public LoHaMergeNet() : base(nameof(LoHaMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on a LoHa adapter: the file-level merge runs LoHa's own math.</summary>
public sealed class LoHaCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private LoHaMergeNet SaveModel()
    {
        Seeding.SetSeed(11);
        var model = new LoHaMergeNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 111); // hada_w2_b starts at zero: a zero update otherwise
        return model;
    }

    [Fact]
    public void Merge_equals_the_models_merge_and_gives_the_adapted_outputs()
    {
        using var model = SaveModel();
        using var x = randn(5, LoHaMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");

        Assert.True((merged["fc2.weight"] - original["fc2.weight"]).abs().max().item<float>() > 1e-2);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());

        Seeding.SetSeed(99);
        using var fresh = new LoHaMergeNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, _dir, x, adapted);
    }

    [Fact]
    public void Inspect_lists_the_hada_tensors_the_settings_per_module_and_the_parameter_count()
    {
        using var model = SaveModel();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("LOHA", json["peft_type"]!.GetValue<string>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(8, tensors.Count);
        Assert.Equal(new long[] { 32, 2 }, tensors["base_model.model.fc1.hada_w1_a"]);
        Assert.Equal(new long[] { 2, 16 }, tensors["base_model.model.fc1.hada_w2_b"]);
        Assert.Equal(new long[] { 24, 3 }, tensors["base_model.model.fc2.hada_w2_a"]);
        Assert.Equal(new long[] { 3, 32 }, tensors["base_model.model.fc2.hada_w1_b"]);
        var fc2 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(3, fc2["r"]!.GetValue<int>());
        Assert.Equal(2.0, fc2["scaling"]!.GetValue<double>());
        // 2·r·(in + out): 2·2·(16 + 32) + 2·3·(32 + 24).
        Assert.Equal(2 * 2 * (16 + 32) + 2 * 3 * (32 + 24), json["trainable_parameters"]!.GetValue<long>());
    }
}
