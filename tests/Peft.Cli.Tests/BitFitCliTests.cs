using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>BitFit on a linear layer and a LayerNorm, and a plain head.</summary>
public sealed partial class BitFitMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [BitFit]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [BitFit]
    private Module<Tensor, Tensor> norm = LayerNorm(32);

    private Module<Tensor, Tensor> head = Linear(32, 3);

    public BitFitMergeNet() : base(nameof(BitFitMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(norm.call(functional.relu(fc1.call(x)))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on a BitFit adapter: the merge writes the trained biases into the base
/// file's biases and leaves every weight as it was.</summary>
public sealed class BitFitCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private BitFitMergeNet SaveModel()
    {
        Seeding.SetSeed(21);
        var model = new BitFitMergeNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 121); // the copies start equal to the biases otherwise
        return model;
    }

    [Fact]
    public void Merge_writes_the_trained_biases_and_gives_the_adapted_outputs()
    {
        using var model = SaveModel();
        using var x = randn(5, BitFitMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged norm.weight F32 [32]");

        // The biases are the adapter's tensors; every weight is the base file's, bit for bit.
        using (var file = SafetensorsFile.Open(System.IO.Path.Combine(_dir["adapter"], AdapterFiles.WeightsFileName)))
        {
            using var trained = file.ReadTensor("base_model.model.fc1.bitfit_bias");
            Assert.Equal(0f, (merged["fc1.bias"] - trained).abs().max().item<float>());
        }

        Assert.True((merged["fc1.bias"] - original["fc1.bias"]).abs().max().item<float>() > 1e-2);
        Assert.True((merged["norm.bias"] - original["norm.bias"]).abs().max().item<float>() > 1e-2);
        foreach (var key in new[] { "fc1.weight", "norm.weight", "head.weight", "head.bias" })
        {
            Assert.Equal(0f, (merged[key] - original[key]).abs().max().item<float>());
        }

        Seeding.SetSeed(99);
        using var fresh = new BitFitMergeNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, _dir, x, adapted);
    }

    [Fact]
    public void Inspect_lists_the_bias_tensors_and_counts_one_parameter_per_bias_entry()
    {
        using var model = SaveModel();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("BITFIT", json["peft_type"]!.GetValue<string>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(2, tensors.Count);
        Assert.Equal(new long[] { 32 }, tensors["base_model.model.fc1.bitfit_bias"]);
        Assert.Equal(new long[] { 32 }, tensors["base_model.model.norm.bitfit_bias"]);
        Assert.Equal(32 + 32, json["trainable_parameters"]!.GetValue<long>());
    }
}
