using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two RandLoRA layers of different shapes (16 → 32, in ≤ out; 32 → 24, in &gt; out), bases sized min 32, max 32,
/// and a plain head.</summary>
public sealed partial class RandLoRAMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [RandLoRA(rank: 8, alpha: 16, ProjectionPrngKey = 4)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [RandLoRA(rank: 8, alpha: 16, ProjectionPrngKey = 4)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public RandLoRAMergeNet() : base(nameof(RandLoRAMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on a RandLoRA adapter: the file-level merge runs RandLoRA's own math
/// (both orientations) with the file's bases, or with bases regenerated from the seed when the file has none.</summary>
public sealed class RandLoRACliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private RandLoRAMergeNet SaveModel(bool saveProjection)
    {
        Seeding.SetSeed(11);
        var model = new RandLoRAMergeNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 111); // λ starts at zero: a zero update otherwise
        if (!saveProjection)
        {
            // The same adapter as PEFT writes it with save_projection false: no bases, the flag in the config.
            string weights = Path.Combine(_dir["adapter"], AdapterFiles.WeightsFileName);
            Dictionary<string, Tensor> kept;
            using (var reader = SafetensorsFile.Open(weights))
            {
                kept = reader.Tensors.Where(t => !t.Name.StartsWith("base_model.randlora_", StringComparison.Ordinal)).ToDictionary(t => t.Name, t => reader.ReadTensor(t.Name));
            }

            SafetensorsFile.Write(weights, kept.ToList(), new Dictionary<string, string> { ["format"] = "pt" });
            string configPath = Path.Combine(_dir["adapter"], AdapterFiles.ConfigFileName);
            var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
            config["save_projection"] = false;
            File.WriteAllText(configPath, config.ToJsonString());
        }

        return model;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Merge_equals_the_models_merge_with_the_files_or_regenerated_bases(bool saveProjection)
    {
        using var model = SaveModel(saveProjection);
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");

        Assert.True((merged["fc1.weight"] - original["fc1.weight"]).abs().max().item<float>() > 1e-3);
        Assert.True((merged["fc2.weight"] - original["fc2.weight"]).abs().max().item<float>() > 1e-3);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());
    }

    [Fact]
    public void Inspect_lists_the_scale_and_basis_tensors_and_counts_only_the_scales_as_trainable()
    {
        using var model = SaveModel(saveProjection: true);
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("RANDLORA", json["peft_type"]!.GetValue<string>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(6, tensors.Count);
        Assert.Equal(new long[] { 8, 2 }, tensors["base_model.model.fc1.randlora_lambda"]);   // min 16, n = 2
        Assert.Equal(new long[] { 2, 16 }, tensors["base_model.model.fc1.randlora_gamma"]);
        Assert.Equal(new long[] { 8, 3 }, tensors["base_model.model.fc2.randlora_lambda"]);   // min 24, n = 3
        Assert.Equal(new long[] { 3, 24 }, tensors["base_model.model.fc2.randlora_gamma"]);
        Assert.Equal(new long[] { 8, 1, 32 }, tensors["base_model.randlora_A"]);              // min(in_max 32, out_max 32)
        Assert.Equal(new long[] { 32, 4, 8 }, tensors["base_model.randlora_B"]);              // max 32, n = 4
        var fc2 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(8, fc2["r"]!.GetValue<int>());
        Assert.Equal(2.0, fc2["scaling"]!.GetValue<double>());
        // r·n + n·min per layer: (16 + 32) + (24 + 72); the bases are frozen.
        Assert.Equal(16 + 32 + 24 + 72, json["trainable_parameters"]!.GetValue<long>());
        Assert.Equal((8 * 32) + (32 * 4 * 8), json["frozen_shared_parameters"]!.GetValue<long>());
    }
}
