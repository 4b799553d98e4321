using System.Text.Json.Nodes;
using Peft.Checkpoints;
using Peft.Models.Bert;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Bert;

/// <summary>
/// LoRA on a tiny BERT classifier: a few steps on a separable task, then the adapter (PEFT layout, task SEQ_CLS, the
/// [Trainable] classifier as modules_to_save) is saved, reloaded over the base checkpoint into a fresh model and compared.
/// </summary>
[Collection(TinyBert.Collection)]
public sealed class BertAdapterTests : IDisposable
{
    private const int Steps = 30;
    private readonly string _root = TinyBert.TempDir("adapter");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>Label 0: every token in [1, 32); label 1: every token in [32, 64). Rows are right-padded to 8.</summary>
    private static (Tensor Ids, Tensor Mask, Tensor Labels) SeparableBatch(int seed, int batch)
    {
        var generator = new torch.Generator((ulong)seed);
        var labels = randint(0, 2, new long[] { batch }, dtype: ScalarType.Int64, generator: generator);
        var ids = randint(1, 32, new long[] { batch, 8 }, dtype: ScalarType.Int64, generator: generator) + (labels.unsqueeze(1) * 32);
        var lengths = randint(3, 9, new long[] { batch, 1 }, dtype: ScalarType.Int64, generator: generator);
        var mask = arange(8, dtype: ScalarType.Int64).unsqueeze(0).lt(lengths).to_type(ScalarType.Int64);
        return (ids * mask, mask, labels);
    }

    [Fact]
    public void LoRATrainingReducesLossMovesOnlyAdaptersAndClassifierAndReloads()
    {
        string baseDir = Path.Combine(_root, "base");
        string adapterDir = Path.Combine(_root, "adapter");

        using var model = TinyBert.CreateWithLoRA(30, dropout: 0.1);
        HfCheckpoint.Save(model, baseDir, model.Config.ToHf());
        var before = model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());

        var (ids, mask, labels) = SeparableBatch(31, 64);
        model.train();
        var losses = new List<double>();
        using (var trainer = new AdapterTrainer(model.TrainableParameters(), new TrainingOptions { LearningRate = 3e-2, TotalSteps = Steps, Seed = 32 }))
        {
            for (int step = 0; step < Steps; step++)
            {
                var progress = trainer.TrainStep(() => nn.functional.cross_entropy(model.Forward(ids, mask), labels));
                losses.Add(progress.Loss);
            }
        }

        model.eval();
        Assert.True(losses.TakeLast(3).Average() < 0.5 * losses.Take(3).Average(), $"loss did not fall by half: {string.Join(", ", losses)}");
        Console.WriteLine($"BERT LoRA losses: {losses[0]:F4} -> {losses[^1]:F4}");
        using (no_grad())
        {
            // The batch is learned (the eval-mode forward, without dropout, classifies it).
            double accuracy = model.Forward(ids, mask).argmax(-1).eq(labels).to_type(ScalarType.Float32).mean().item<float>();
            Assert.True(accuracy >= 0.9, $"training-batch accuracy {accuracy}");
        }

        // Only the adapters and the classifier moved.
        foreach (var (name, after) in model.state_dict())
        {
            bool shouldTrain = name.Contains(".default.lora_", StringComparison.Ordinal) || name.StartsWith("classifier.", StringComparison.Ordinal);
            bool unchanged = TinyBert.BitwiseEqual(before[name], after);
            // lora_A starts random and lora_B at zero; both move once trained.
            Assert.True(shouldTrain != unchanged, shouldTrain ? $"{name} did not train" : $"frozen {name} changed");
        }

        AdapterFiles.Save(model, adapterDir, options: new AdapterSaveOptions { TaskType = "SEQ_CLS" });
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("SEQ_CLS", (string?)config["task_type"]);
        Assert.Equal("LORA", (string?)config["peft_type"]);
        Assert.Equal(8, (int?)config["r"]);
        var targets = config["target_modules"]!.AsArray().Select(n => (string?)n).OrderBy(n => n, StringComparer.Ordinal).ToList();
        Assert.Equal(new[] { "query", "value" }, targets);
        using (var adapterWeights = SafetensorsFile.Open(Path.Combine(adapterDir, AdapterFiles.WeightsFileName)))
        {
            // PEFT's key layout: base_model.model.<module path>.lora_A.weight, adapter name dropped.
            var keys = adapterWeights.Tensors.Select(t => t.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();
            Assert.Equal(10, keys.Count);
            Assert.Contains("base_model.model.classifier.weight", keys);
            Assert.Contains("base_model.model.classifier.bias", keys);
            Assert.Contains("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight", keys);
            Assert.Contains("base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight", keys);
        }

        using (var weights = HfCheckpoint.Open(baseDir))
        {
            Assert.DoesNotContain(weights.TensorNames, n => n.Contains("lora", StringComparison.Ordinal));
        }

        var probe = SeparableBatch(34, 6);
        Tensor expected;
        using (no_grad()) expected = model.Forward(probe.Ids, probe.Mask);

        // The stock model declares no adapter: the file's target_modules create it, modules_to_save fills the classifier.
        manual_seed(777);
        using var fresh = BertForSequenceClassification.FromPretrained(baseDir);
        var result = AdapterFiles.Load(fresh, adapterDir);
        Assert.Equal(10, result.LoadedTensors);
        Assert.Equal(new[] { "classifier" }, result.ModulesToSave);
        Assert.Equal("SEQ_CLS", result.Config.TaskType);
        using (no_grad())
        {
            var actual = fresh.Forward(probe.Ids, probe.Mask);
            Assert.True(TinyBert.BitwiseEqual(expected, actual), "the reloaded adapter (with its classifier) gives different logits");
        }
    }
}
