using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two VB-LoRA layers of different shapes sharing one bank [10, 8], and a plain head.</summary>
public sealed partial class VBLoRAMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [VBLoRA(4, 10, 8, TopK = 3)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [VBLoRA(4, 10, 8, TopK = 3)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public VBLoRAMergeNet() : base(nameof(VBLoRAMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on a VB-LoRA adapter: the file-level merge composes A and B from the
/// file's logits and its one bank with VB-LoRA's own math, and inspect counts the bank once, as trainable.</summary>
public sealed class VBLoRACliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private VBLoRAMergeNet SaveModel()
    {
        Seeding.SetSeed(12);
        var model = new VBLoRAMergeNet();
        model.BindSharedTensors();                                   // so the bank is among the randomized parameters
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 112);
        return model;
    }

    [Fact]
    public void Merge_equals_the_models_merge()
    {
        using var model = SaveModel();
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");

        Assert.True((merged["fc1.weight"] - original["fc1.weight"]).abs().max().item<float>() > 1e-3);
        Assert.True((merged["fc2.weight"] - original["fc2.weight"]).abs().max().item<float>() > 1e-3);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());
    }

    [Fact]
    public void Inspect_lists_the_logits_and_the_bank_and_counts_the_bank_once_as_trainable()
    {
        using var model = SaveModel();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("VBLORA", json["peft_type"]!.GetValue<string>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(5, tensors.Count);
        Assert.Equal(new long[] { 4, 2, 10 }, tensors["base_model.model.fc1.vblora_logits_A"]);   // [r, in/L, N]
        Assert.Equal(new long[] { 3, 4, 10 }, tensors["base_model.model.fc2.vblora_logits_B"]);   // [out/L, r, N]
        Assert.Equal(new long[] { 10, 8 }, tensors["base_model.vblora_vector_bank"]);
        var fc2 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(3, fc2["topk"]!.GetValue<int>());
        // r·N·(in + out)/L per layer: 4·10·(2 + 4) + 4·10·(4 + 3), and the bank 10·8 once.
        Assert.Equal((4 * 10 * 6) + (4 * 10 * 7) + (10 * 8), json["trainable_parameters"]!.GetValue<long>());
        Assert.Equal(0, json["frozen_shared_parameters"]!.GetValue<long>());
        Assert.Equal(new[] { "base_model.vblora_vector_bank" }, json["shared_tensors"]!.AsArray().Select(n => n!.GetValue<string>()));
    }
}
