using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>SSF after a linear layer and a LayerNorm, and a plain head.</summary>
public sealed partial class SSFMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [SSF]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [SSF]
    private Module<Tensor, Tensor> norm = LayerNorm(32);

    private Module<Tensor, Tensor> head = Linear(32, 3);

    public SSFMergeNet() : base(nameof(SSFMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(norm.call(functional.relu(fc1.call(x)))).MoveToOuterDisposeScope();
    }
}

/// <summary>SSF on a linear layer without a bias.</summary>
public sealed partial class SSFNoBiasNet : Module<Tensor, Tensor>
{
#pragma warning disable PEFT0025 // the point of the test: the merge is refused
    [SSF]
    private Module<Tensor, Tensor> proj = Linear(8, 8, hasBias: false);
#pragma warning restore PEFT0025

    public SSFNoBiasNet() : base(nameof(SSFNoBiasNet)) => InitializePeft();

    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on an SSF adapter: the merge is <c>W' = diag(γ) W</c>,
/// <c>b' = γ ⊙ b + β</c> on the base file's tensors, and is refused, naming the module, where the base has no bias.</summary>
public sealed class SSFCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Merge_scales_the_rows_and_shifts_the_bias_and_gives_the_adapted_outputs()
    {
        Seeding.SetSeed(31);
        using var model = new SSFMergeNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 131);
        using var x = randn(5, SSFMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged norm.weight F32 [32]");

        var adapter = MethodMergeChecks.ReadAll(System.IO.Path.Combine(_dir["adapter"], AdapterFiles.WeightsFileName));
        var gamma = adapter["base_model.model.fc1.ssf_scale"];
        var beta = adapter["base_model.model.fc1.ssf_shift"];
        Assert.True((merged["fc1.weight"] - original["fc1.weight"] * gamma.unsqueeze(1)).abs().max().item<float>() < 1e-6);
        Assert.True((merged["fc1.bias"] - (original["fc1.bias"] * gamma + beta)).abs().max().item<float>() < 1e-6);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());

        Seeding.SetSeed(99);
        using var fresh = new SSFMergeNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, _dir, x, adapted);
    }

    [Fact]
    public void Merge_into_a_base_without_the_bias_is_refused_naming_the_module()
    {
        Seeding.SetSeed(32);
        using var model = new SSFNoBiasNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 132);
        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapter"], "--output", _dir["merged.safetensors"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("'proj'", result.Error, StringComparison.Ordinal);
        Assert.Contains("no bias to hold the shift", result.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
    }

    [Fact]
    public void Inspect_lists_the_scale_and_shift_tensors_and_counts_two_per_feature()
    {
        Seeding.SetSeed(33);
        using var model = new SSFMergeNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 133);
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("SSF", json["peft_type"]!.GetValue<string>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(4, tensors.Count);
        Assert.Equal(new long[] { 32 }, tensors["base_model.model.fc1.ssf_scale"]);
        Assert.Equal(new long[] { 32 }, tensors["base_model.model.norm.ssf_shift"]);
        Assert.Equal(2 * 32 + 2 * 32, json["trainable_parameters"]!.GetValue<long>());
    }
}
