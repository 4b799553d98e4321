using Peft.Data;
using Peft.Models.UseLite;
using Sentiment;
using Xunit.Abstractions;

namespace Peft.Models.Tests;

/// <summary>
/// A short LoRA run of the sentiment sample on a subset: the loss falls, accuracy rises well above chance, the adapters
/// move, and the saved PEFT directory (adapter + head) reloads to the same held-out accuracy.
/// </summary>
public sealed class SentimentTrainingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Short_LoRA_run_on_a_subset_lowers_the_loss_and_beats_chance()
    {
        var cache = new NpmPackageCache();
        var (train, test) = SentimentData.Split(await SentimentData.LoadAsync(cache));
        var trainSubset = train.Where((_, i) => i % 8 == 0).ToList();   // 299 sentences from all three sources
        var testSubset = test.Where((_, i) => i % 3 == 0).ToList();     // 199 sentences
        using var model = await UseLiteModel.LoadAsync(cache);
        Assert.Empty(model.Encoder.AdapterNames());   // the method's targets add the adapter

        string saveDir = Path.Combine(Path.GetTempPath(), "peft-sentiment-" + Guid.NewGuid().ToString("N"));
        var lora = SentimentMethods.Get("lora");
        var result = SentimentExperiment.Run(model, lora, trainSubset, testSubset, new SentimentSettings(Epochs: 2, BatchSize: 16, LearningRate: 3e-3),
            saveDirectory: saveDir);

        output.WriteLine($"accuracy {result.AccuracyBefore:F4} -> {result.Accuracy:F4}, mean loss {result.FirstLoss:F4} -> {result.LastLoss:F4}");
        Assert.Equal(58_368 + 512 * 2 + 2, result.TrainableParameters);
        // Measured (2 CPU threads, LoRA by UseLiteTargets.LoRA): held-out accuracy 0.513 before, 0.854 after; mean loss 0.586
        // (epoch 1) -> 0.233 (epoch 2). (With LoRA declared by attributes it was 0.869 and 0.582 -> 0.226: other random draws.)
        Assert.InRange(result.AccuracyBefore, 0.3, 0.7);
        Assert.True(result.Accuracy > 0.80, $"held-out accuracy {result.Accuracy}");
        Assert.True(result.LastLoss < result.FirstLoss - 0.2, $"mean loss {result.FirstLoss} -> {result.LastLoss}");
        Assert.True(result.LastLoss < 0.35, $"last epoch's mean loss {result.LastLoss}");

        // One PEFT directory holds the whole adaptation: the LoRA adapter and the [Trainable] head (modules_to_save).
        try
        {
            var config = Peft.Serialization.AdapterConfig.Read(Path.Combine(saveDir, Peft.Serialization.AdapterFiles.ConfigFileName));
            Assert.Equal(new[] { "head" }, config.ModulesToSave);
            Assert.Equal("SEQ_CLS", config.TaskType);

            // Reloaded over a freshly loaded pretrained encoder, it classifies the held-out sentences exactly as trained.
            using var freshModel = await UseLiteModel.LoadAsync(cache);
            using var fresh = new SentimentClassifier(freshModel.Encoder);
            Assert.Empty(fresh.AdapterNames());
            SentimentExperiment.Load(fresh, lora, saveDir);   // AdapterFiles.Load creates the adapter from the file's target_modules
            // On the 12 projections; lora_B starts at zero, and every one moved in training.
            var layers = fresh.AdaptedLayers().Where(l => l.Layer.HasAdapter(AdapterNames.Default)).ToList();
            Assert.Equal(12, layers.Count);
            Assert.All(layers, l => Assert.True(((LoRAAdapter)l.Layer.GetAdapter(AdapterNames.Default)).B.abs().max().item<float>() > 0, $"{l.Path}: lora_B did not move"));
            double reloaded = SentimentExperiment.Evaluate(fresh, SentimentExperiment.Encode(freshModel, testSubset), testSubset);
            Assert.Equal(result.Accuracy, reloaded);
        }
        finally
        {
            if (Directory.Exists(saveDir)) Directory.Delete(saveDir, recursive: true);
        }
    }
}
