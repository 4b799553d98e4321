using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>Two VeRA layers of different sizes (projections sized 16 in, 32 out) and a plain head.</summary>
public sealed partial class VeRAMergeNet : Module<Tensor, Tensor>
{
    public const int In = 16;

    [VeRA(rank: 8, ProjectionPrngKey = 4)]
    private Module<Tensor, Tensor> fc1 = Linear(In, 32);

    [VeRA(rank: 8, ProjectionPrngKey = 4)]
    private Module<Tensor, Tensor> fc2 = Linear(32, 24);

    private Module<Tensor, Tensor> head = Linear(24, 3);

    public VeRAMergeNet() : base(nameof(VeRAMergeNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary><c>peft merge</c> and <c>peft inspect</c> on a VeRA adapter: the file-level merge runs VeRA's own math with the
/// file's projections, or with projections regenerated from the seed when the file has none.</summary>
public sealed class VeRACliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private VeRAMergeNet SaveModel(bool saveProjection)
    {
        Seeding.SetSeed(11);
        var model = new VeRAMergeNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 111); // λ_b starts at zero: a zero update otherwise
        if (!saveProjection)
        {
            // The same adapter as PEFT writes it with save_projection false: no projections, the flag in the config.
            string weights = Path.Combine(_dir["adapter"], AdapterFiles.WeightsFileName);
            Dictionary<string, Tensor> kept;
            using (var reader = SafetensorsFile.Open(weights))
            {
                kept = reader.Tensors.Where(t => !t.Name.StartsWith("base_model.vera_", StringComparison.Ordinal)).ToDictionary(t => t.Name, t => reader.ReadTensor(t.Name));
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
    public void Merge_equals_the_models_merge_with_the_files_or_regenerated_projections(bool saveProjection)
    {
        using var model = SaveModel(saveProjection);
        var (merged, original) = MethodMergeChecks.AssertFileMergeEqualsModelMerge(model, _dir, "merged fc1.weight F32 [32, 16]", "merged fc2.weight F32 [24, 32]");

        Assert.True((merged["fc2.weight"] - original["fc2.weight"]).abs().max().item<float>() > 1e-3);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());
    }

    [Fact]
    public void Inspect_lists_the_lambda_and_projection_tensors_and_counts_only_the_lambdas_as_trainable()
    {
        using var model = SaveModel(saveProjection: true);
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("VERA", json["peft_type"]!.GetValue<string>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(6, tensors.Count);
        Assert.Equal(new long[] { 32 }, tensors["base_model.model.fc1.vera_lambda_b"]);
        Assert.Equal(new long[] { 8 }, tensors["base_model.model.fc2.vera_lambda_d"]);
        Assert.Equal(new long[] { 8, 32 }, tensors["base_model.vera_A"]);   // [r, max in]
        Assert.Equal(new long[] { 32, 8 }, tensors["base_model.vera_B"]);   // [max out, r]
        var fc2 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(8, fc2["r"]!.GetValue<int>());
        Assert.Equal(4, fc2["projection_prng_key"]!.GetValue<int>());
        // r + out per layer: (8 + 32) + (8 + 24); the projections are frozen.
        Assert.Equal(8 + 32 + 8 + 24, json["trainable_parameters"]!.GetValue<long>());
        Assert.Equal(2 * 8 * 32, json["frozen_shared_parameters"]!.GetValue<long>());
    }
}
