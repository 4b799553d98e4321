using System.Text.Json.Nodes;
using Peft.Checkpoints;
using Peft.Models.Gpt2;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Gpt2;

/// <summary>LoRA on c_attn (<see cref="Gpt2Targets.LoRA"/>): training, PEFT adapter files, merging and merged export in Conv1D layout.</summary>
[Collection(TinyGpt2.Collection)]
public sealed class Gpt2AdapterTests : IDisposable
{
    private readonly string _root = TinyGpt2.TempDir("adapter");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string Dir(string name) => Path.Combine(_root, name);

    /// <summary>Base checkpoint from hand-built Conv1D tensors, loaded, then 8 AdamW steps on the adapter.</summary>
    private (Gpt2LMHeadModel Model, List<double> Losses, Dictionary<string, Tensor> BaseBefore) Train()
    {
        TinyGpt2.WriteCheckpoint(Dir("base"), TinyGpt2.RawConv1DTensors(20));
        var model = TinyGpt2.WithLoRA(Gpt2LMHeadModel.FromPretrained(Dir("base")));
        var baseBefore = model.state_dict().Where(p => !p.Key.Contains(".default.", StringComparison.Ordinal))
            .ToDictionary(p => p.Key, p => p.Value.clone(), StringComparer.Ordinal);
        var trainIds = TinyGpt2.RandomIds(22, 4, 16);
        model.train();
        var losses = new List<double>();
        using (var trainer = new AdapterTrainer(model.TrainableParameters(), new TrainingOptions { LearningRate = 1e-2, TotalSteps = 8 }))
        {
            for (int step = 0; step < 8; step++)
            {
                var progress = trainer.TrainStep(() =>
                {
                    var logits = model.call(trainIds[.., ..^1]);
                    return nn.functional.cross_entropy(logits.reshape(-1, TinyGpt2.Vocab), trainIds[.., 1..].reshape(-1));
                });
                losses.Add(progress.Loss);
            }
        }

        model.eval();
        return (model, losses, baseBefore);
    }

    [Fact]
    public void TrainingLowersLossLeavesTheBaseBitwiseUnchangedAndReloadsIdentically()
    {
        var (model, losses, baseBefore) = Train();
        using var _model = model;
        Assert.True(losses[^1] < losses[0], $"loss did not decrease: {string.Join(", ", losses)}");
        var state = model.state_dict();
        foreach (var (name, before) in baseBefore)
        {
            Assert.True(TinyGpt2.BitwiseEqual(before, state[name]), $"frozen base weight {name} changed");
        }

        var ids = TinyGpt2.RandomIds(23, 2, 10);
        Tensor trained;
        using (no_grad()) trained = model.call(ids);

        AdapterFiles.Save(model, Dir("adapter"), options: new AdapterSaveOptions { BaseModelNameOrPath = "gpt2", TaskType = "CAUSAL_LM" });
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Dir("adapter"), AdapterFiles.ConfigFileName)))!;
        Assert.True(config["fan_in_fan_out"]!.GetValue<bool>());
        Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal("c_attn", Assert.Single(config["target_modules"]!.AsArray())!.GetValue<string>());
        using (var reader = SafetensorsFile.Open(Path.Combine(Dir("adapter"), AdapterFiles.WeightsFileName)))
        {
            Assert.Equal(
                new[] { "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight",
                        "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight", "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight" },
                reader.Tensors.Select(t => t.Name).OrderBy(n => n, StringComparer.Ordinal));
            Assert.Equal(new long[] { 8, 32 }, reader.GetInfo("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").Shape);
            Assert.Equal(new long[] { 96, 8 }, reader.GetInfo("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight").Shape);
        }

        // A fresh stock model (other init, no adapter) + base checkpoint + adapter: the file's target_modules create the
        // adapter, and the logits are the same, bit for bit.
        manual_seed(999);
        using var fresh = Gpt2LMHeadModel.FromPretrained(Dir("base"));
        var result = AdapterFiles.Load(fresh, Dir("adapter"));
        Assert.Equal(4, result.LoadedTensors);
        using (no_grad()) Assert.True(TinyGpt2.BitwiseEqual(trained, fresh.call(ids)), "reloaded adapter gives different logits");

        // PEFT sets fan_in_fan_out itself for Conv1D targets, so a config without the flag loads too (same tensors).
        using var plain = Gpt2LMHeadModel.FromPretrained(Dir("base"));
        config["fan_in_fan_out"] = false;
        File.WriteAllText(Path.Combine(Dir("adapter"), AdapterFiles.ConfigFileName), config.ToJsonString());
        AdapterFiles.Load(plain, Dir("adapter"));
        using (no_grad()) Assert.True(TinyGpt2.BitwiseEqual(trained, plain.call(ids)));
    }

    [Fact]
    public void MergeEqualsTheUnmergedForwardAndMergedExportReloadsInConv1DLayout()
    {
        var (model, _, _) = Train();
        using var _model = model;
        var ids = TinyGpt2.RandomIds(24, 2, 10);
        Tensor unmerged;
        using (no_grad()) unmerged = model.call(ids);

        var weightBefore = model.state_dict()["transformer.h.0.attn.c_attn.weight"].clone();
        var a = model.state_dict()["transformer.h.0.attn.c_attn.default.lora_A.weight"];
        var b = model.state_dict()["transformer.h.0.attn.c_attn.default.lora_B.weight"];
        model.Merge();
        Tensor merged;
        using (no_grad()) merged = model.call(ids);
        Assert.True(TinyGpt2.MaxAbsDiff(unmerged, merged) < 1e-5, $"merged forward differs by {TinyGpt2.MaxAbsDiff(unmerged, merged)}");

        model.SavePretrained(Dir("merged"));
        using (var reader = SafetensorsFile.Open(Path.Combine(Dir("merged"), HfCheckpoint.WeightsFileName)))
        {
            // HF's Conv1D layout: [in, out], holding (W + alpha/r · B·A)ᵀ.
            using var stored = reader.ReadTensor("transformer.h.0.attn.c_attn.weight");
            Assert.Equal(new long[] { 32, 96 }, stored.shape);
            var expected = (weightBefore + b.matmul(a) * (16.0 / 8.0)).t();
            Assert.True(TinyGpt2.MaxAbsDiff(stored, expected) < 1e-6);
            Assert.Equal(new long[] { 32, 128 }, reader.GetInfo("transformer.h.0.mlp.c_fc.weight").Shape);
            Assert.DoesNotContain(reader.Tensors, t => t.Name.Contains("lora", StringComparison.Ordinal));
        }

        using var reloaded = Gpt2LMHeadModel.FromPretrained(Dir("merged"));
        Tensor exported;
        using (no_grad()) exported = reloaded.call(ids);
        Assert.True(TinyGpt2.MaxAbsDiff(unmerged, exported) < 1e-5, $"exported model differs by {TinyGpt2.MaxAbsDiff(unmerged, exported)}");

        model.Unmerge();
        using (no_grad()) Assert.True(TinyGpt2.MaxAbsDiff(unmerged, model.call(ids)) < 1e-5);
    }
}
