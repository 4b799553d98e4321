using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two LoftQ layers (NF4, 2 iterations; PEFT stores one loftq_config per adapter) and a plain head.</summary>
public sealed partial class LoftQMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [LoRA(rank: 2, alpha: 4, Init = LoRAInit.LoftQ, LoftQIterations = 2)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [LoRA(rank: 3, alpha: 3, Init = LoRAInit.LoftQ, LoftQIterations = 2)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public LoftQMergeNet() : base(nameof(LoftQMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>The same layers without adapters (the original base model).</summary>
[Adaptable]
public sealed partial class LoftQBaseNet : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> fc1 = Linear(LoftQMergeNet.In, 32);
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);
    private Module<Tensor, Tensor> head = Linear(24, 3);

    public LoftQBaseNet() : base(nameof(LoftQBaseNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c>, <c>peft inspect</c> and <c>peft convert</c> on a LoftQ adapter: the file-level merge quantizes
/// the original base file as the model's LoftQ did (the same iterations, the same quantizer) and adds the update, so it equals
/// the model's merge <c>Q + s·BA</c>; the conversion to a plain LoRA is refused (PEFT converts PiSSA/OLoRA/CorDA only).</summary>
public sealed class LoftQCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private LoftQMergeNet SaveModel()
    {
        Seeding.SetSeed(13);
        using (var original = new LoftQBaseNet()) ModelWeights.Save(original, _dir["base.safetensors"]);
        var model = new LoftQMergeNet();
        ModelWeights.Load(model, _dir["base.safetensors"]);
        model.ReinitializeFromBase();
        MethodMergeChecks.SimulateTraining(model, 113);

        AdapterFiles.Save(model, _dir["adapter"]);
        return model;
    }

    [Fact]
    public void Merge_quantizes_the_original_base_as_the_model_did_and_adds_the_update()
    {
        using var model = SaveModel();
        using var x = randn(5, LoftQMergeNet.In);
        model.eval();
        using var adapted = model.call(x);
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");
        Assert.True((merged["fc1.weight"] - original["fc1.weight"]).abs().max().item<float>() > 1e-4);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());

        using var fresh = new LoftQBaseNet();
        MethodMergeChecks.AssertMergedFileGivesTheAdaptedOutputs(fresh, _dir, x, adapted);
    }

    [Fact]
    public void Convert_is_refused_naming_LoftQ()
    {
        using var model = SaveModel();
        var result = CliRunner.Run("convert", "--adapter", _dir["adapter"], "--initial", _dir["adapter"], "--output", _dir["converted"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("LoftQ", result.Error);
        Assert.False(File.Exists(Path.Combine(_dir["converted"], AdapterFiles.ConfigFileName)));
    }

    [Fact]
    public void Inspect_shows_the_initialisation_and_loftq_config()
    {
        using var model = SaveModel();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        var fc1 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc1")!;
        Assert.Equal("loftq", fc1["init_lora_weights"]!.GetValue<string>());
        Assert.Equal(4, fc1["loftq_bits"]!.GetValue<int>());
        Assert.Equal(2, fc1["loftq_iter"]!.GetValue<int>());
    }
}
