using System.Diagnostics;
using Peft;
using Peft.Models.UseLite;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sentiment;

/// <summary>Training settings of one run.</summary>
/// <param name="Epochs">Passes over the training set.</param>
/// <param name="BatchSize">Sentences per step.</param>
/// <param name="LearningRate">AdamW peak learning rate (warmup over the first 10% of steps, then cosine decay to 0).</param>
/// <param name="Seed">Seeds the head, the adapters, the batch order and the trainer.</param>
public sealed record SentimentSettings(int Epochs, int BatchSize, double LearningRate, int Seed = 7);

/// <summary>What one run measured.</summary>
/// <param name="Method">The method's <c>--method</c> name.</param>
/// <param name="Seed">The run's seed.</param>
/// <param name="TrainableParameters">Parameters the optimizer updated (head included).</param>
/// <param name="AccuracyBefore">Held-out accuracy before training (the untrained head).</param>
/// <param name="Accuracy">Held-out accuracy after training.</param>
/// <param name="SecondsPerEpoch">Mean training wall time of an epoch (evaluation excluded).</param>
/// <param name="FirstLoss">Mean training loss of the first epoch.</param>
/// <param name="LastLoss">Mean training loss of the last epoch.</param>
public sealed record SentimentResult(
    string Method, int Seed, long TrainableParameters, double AccuracyBefore, double Accuracy, double SecondsPerEpoch, double FirstLoss, double LastLoss);

/// <summary>Trains and evaluates one method on a split.</summary>
public static class SentimentExperiment
{
    /// <summary>
    /// Builds a classifier on <paramref name="model"/>'s encoder for <paramref name="method"/>, trains it on
    /// <paramref name="train"/> and measures accuracy on <paramref name="test"/>. The encoder is changed by the run (its
    /// targeted layers are wrapped, and full fine-tuning trains every weight) and disposed with the classifier at the end:
    /// use a freshly loaded model per run.
    /// </summary>
    /// <param name="model">A freshly loaded pretrained model.</param>
    /// <param name="method">The method.</param>
    /// <param name="train">Training sentences.</param>
    /// <param name="test">Held-out sentences.</param>
    /// <param name="settings">Epochs, batch size, learning rate and seed.</param>
    /// <param name="log">Receives a line per epoch, when given.</param>
    /// <param name="saveDirectory">When given, the trained result is saved in this directory after the evaluation (see <see cref="Save"/>).</param>
    public static SentimentResult Run(
        UseLiteModel model, SentimentMethod method, IReadOnlyList<SentimentExample> train, IReadOnlyList<SentimentExample> test,
        SentimentSettings settings, TextWriter? log = null, string? saveDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        ArgumentNullException.ThrowIfNull(settings);
        Seeding.SetSeed(settings.Seed);
        using var classifier = new SentimentClassifier(model.Encoder);
        var trainable = Configure(classifier, model, method);
        long trainableCount = trainable.Sum(p => p.numel());

        var trainIds = Encode(model, train);
        var testIds = Encode(model, test);
        int stepsPerEpoch = (train.Count + settings.BatchSize - 1) / settings.BatchSize;
        int totalSteps = stepsPerEpoch * settings.Epochs;
        var firstBatches = Batches(trainIds, settings.BatchSize, new Random(settings.Seed));   // the first epoch's batches
        if (method.Calibrate is not null)
        {
            Calibrate(classifier, method, trainIds, firstBatches, log);
            trainable = classifier.TrainableParameters().ToList();
            trainableCount = trainable.Sum(p => p.numel());
        }

        double before = Evaluate(classifier, testIds, test);
        var selective = method.Selective?.Invoke(classifier, totalSteps, i => BatchLoss(classifier, firstBatches[i % firstBatches.Count], trainIds, train));
        using var selectiveOwner = selective?.Owner;
        var callbacks = new List<ITrainingCallback>();
        if (selective is not null)
        {
            callbacks.Add(selective.Callback);
            trainable = trainable.Concat(selective.Parameters).ToList();
            trainableCount += selective.TrainedEntries;
        }

        AdapterTrainer Trainer(int steps) => new(trainable, new TrainingOptions
        {
            Callbacks = callbacks,
            // Adapters with a loss term of their own (KaSA's regulariser, LoFiT's L1) get it added to the objective, as their papers train.
            Regularizers = classifier.AdaptedLayers().Any(l => l.Layer.Adapters.Any(a => a is ILossTermAdapter)) || classifier.InsertedAdapters().Any(a => a.Adapter is ILossTermAdapter)
                ? new[] { classifier.AdapterLossTerms() }
                : Array.Empty<Func<torch.Tensor>>(),
            LearningRate = settings.LearningRate,
            ParameterLearningRate = method.TableLearningRate is { } tableRate ? classifier.DePTLearningRates(tableRate) : null,
            TotalSteps = steps,
            WarmupSteps = Math.Max(1, steps / 10),
            MaxGradNorm = 1.0,
            Seed = settings.Seed,
            LogEvery = int.MaxValue,
        });

        // A two-stage method (LoFiT) switches to its second stage's adapters after its first share of the steps, with a fresh optimizer.
        int switchAt = method.SecondStage is null ? -1 : Math.Clamp((int)Math.Round(totalSteps * (1 - method.SecondStageShare)), 1, totalSteps - 1);
        var trainer = Trainer(switchAt > 0 ? switchAt : totalSteps);
        var random = new Random(settings.Seed);
        double firstLoss = double.NaN, lastLoss = double.NaN, seconds = 0;
        int step = 0;
        classifier.train();
        try
        {
            for (int epoch = 0; epoch < settings.Epochs; epoch++)
            {
                var clock = Stopwatch.StartNew();
                double lossSum = 0;
                foreach (var batch in Batches(trainIds, settings.BatchSize, random))
                {
                    if (step++ == switchAt)
                    {
                        trainer.Dispose();
                        method.SecondStage!(classifier);
                        trainable = classifier.TrainableParameters().ToList();
                        trainableCount = trainable.Sum(p => p.numel());
                        log?.WriteLine($"  {method.Name} seed {settings.Seed}: second stage after {switchAt} steps, {trainableCount} trainable parameters");
                        trainer = Trainer(totalSteps - switchAt);
                    }

                    var result = trainer.TrainStep(() => BatchLoss(classifier, batch, trainIds, train));
                    lossSum += result.Loss;
                }
                seconds += clock.Elapsed.TotalSeconds;
                lastLoss = lossSum / stepsPerEpoch;
                if (epoch == 0) firstLoss = lastLoss;
                log?.WriteLine($"  {method.Name} seed {settings.Seed} epoch {epoch + 1}/{settings.Epochs}: mean loss {lastLoss:F4}, {clock.Elapsed.TotalSeconds:F1} s");
            }
        }
        finally
        {
            trainer.Dispose();
        }

        classifier.eval();
        double accuracy = Evaluate(classifier, testIds, test);
        if (saveDirectory is not null)
        {
            Save(classifier, method, saveDirectory);
            log?.WriteLine($"  {method.Name} seed {settings.Seed}: saved to {saveDirectory}");
        }
        return new SentimentResult(method.Name, settings.Seed, trainableCount, before, accuracy, seconds / settings.Epochs, firstLoss, lastLoss);
    }

    /// <summary>Runs the method's data-driven initialisation (<see cref="SentimentMethod.Calibrate"/>: EVA, CorDA) on
    /// <paramref name="batches"/> of the training sentences (Run gives it the first epoch's). Run it after
    /// <see cref="Configure"/>, before the classifier's first forward.</summary>
    /// <param name="classifier">The configured classifier.</param>
    /// <param name="method">The method.</param>
    /// <param name="trainIds">Token ids of the training sentences.</param>
    /// <param name="batches">Sentence indices per batch.</param>
    /// <param name="log">Receives a line with the time taken, when given.</param>
    public static void Calibrate(SentimentClassifier classifier, SentimentMethod method, IReadOnlyList<long[]> trainIds, IReadOnlyList<int[]> batches, TextWriter? log = null)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(trainIds);
        ArgumentNullException.ThrowIfNull(batches);
        if (method.Calibrate is not { } calibrate) return;
        var clock = Stopwatch.StartNew();
        var calibration = batches.Select(b => Batch(b.Select(i => trainIds[i]).ToArray(), classifier.RequiredInputLength())).ToList();
        try
        {
            calibrate(classifier, calibration);
        }
        finally
        {
            foreach (var (ids, mask) in calibration) { ids.Dispose(); mask.Dispose(); }
        }

        log?.WriteLine($"  {method.Name}: calibration on up to {calibration.Count} batches, {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>The cross-entropy of the classifier on one batch of training sentences.</summary>
    private static Tensor BatchLoss(SentimentClassifier classifier, int[] batch, long[][] trainIds, IReadOnlyList<SentimentExample> train)
    {
        var (ids, mask) = Batch(batch.Select(i => trainIds[i]).ToArray(), classifier.RequiredInputLength());
        using var labels = tensor(batch.Select(i => (long)train[i].Label).ToArray(), dtype: ScalarType.Int64);
        return nn.functional.cross_entropy(classifier.call(ids, mask), labels);
    }

    /// <summary>The file <see cref="Save"/> writes the whole classifier to for the methods without an adapter.</summary>
    public const string ModelWeightsFileName = "model.safetensors";

    /// <summary>The sub-directory holding an inserting method's own files (bottleneck adapters: with the tensors they share).</summary>
    public const string InsertedDirectory = "inserted";

    /// <summary>
    /// Where <c>--save DIR</c> puts a run: <c>DIR/&lt;method&gt;</c> when one seed runs, <c>DIR/&lt;method&gt;/seed-&lt;seed&gt;</c>
    /// when several do.
    /// </summary>
    /// <param name="root">The save directory.</param>
    /// <param name="method">The method.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="severalSeeds">Whether the run is one of several seeds.</param>
    public static string SaveDirectoryOf(string root, SentimentMethod method, int seed, bool severalSeeds)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(method);
        string dir = Path.Combine(root, method.Name);
        return severalSeeds ? Path.Combine(dir, $"seed-{seed}") : dir;
    }

    /// <summary>
    /// Saves a trained classifier in <paramref name="directory"/>. A method with an adapter writes a PEFT adapter directory
    /// (adapter_config.json with <c>task_type: SEQ_CLS</c> and <c>modules_to_save: ["head"]</c>, adapter_model.safetensors
    /// with the adapter and the head; the adapter is PEFT's "default", so the files are at the directory's top) that holds
    /// the whole adaptation of the pretrained encoder; the methods that train base weights (probe, full fine-tuning) write
    /// the classifier's weights with <see cref="ModelWeights"/> as <see cref="ModelWeightsFileName"/>.
    /// </summary>
    /// <param name="classifier">The trained classifier.</param>
    /// <param name="method">The method it was trained with.</param>
    /// <param name="directory">The directory to write.</param>
    public static void Save(SentimentClassifier classifier, SentimentMethod method, string directory)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(method);
        if (method.SavesAdapter)
        {
            AdapterFiles.Save(classifier, directory, method.Targets!.AdapterName, new AdapterSaveOptions
            {
                TaskType = "SEQ_CLS",
                BaseModelNameOrPath = UseLiteModel.PackageName,
            });
        }
        else
        {
            Directory.CreateDirectory(directory);
            ModelWeights.Save(classifier, Path.Combine(directory, ModelWeightsFileName));

            // Inserted adapters are in the model's weights, but what they share (Compacter's phm_rule) is in no module:
            // their own files hold it.
            method.SaveInserted?.Invoke(classifier, Path.Combine(directory, InsertedDirectory));
        }
    }

    /// <summary>
    /// Loads what <see cref="Save"/> wrote into a classifier over a freshly loaded pretrained encoder. An adapter is read as
    /// PEFT's <c>PeftModel.from_pretrained</c> reads it: <c>AdapterFiles.Load</c> creates it from the file's config (its
    /// <c>target_modules</c>, or the input embedding for a prompt) and fills the head from <c>modules_to_save</c>.
    /// </summary>
    /// <param name="classifier">A new classifier over a freshly loaded model's encoder.</param>
    /// <param name="method">The method the saved result was trained with.</param>
    /// <param name="directory">The directory <see cref="Save"/> wrote.</param>
    public static void Load(SentimentClassifier classifier, SentimentMethod method, string directory)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(method);
        if (method.SavesAdapter)
        {
            AdapterFiles.Load(classifier, directory, method.Targets!.AdapterName);
            QuantizeIfAsked(classifier, method);
        }
        else
        {
            if (method.LoadInserted is { } load) load(classifier, Path.Combine(directory, InsertedDirectory));
            else method.Insert?.Invoke(classifier);
            ModelWeights.Load(classifier, Path.Combine(directory, ModelWeightsFileName));
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

    /// <summary>
    /// Applies the method to the classifier (its adapter by configuration, with a prompt initialised from
    /// <see cref="SentimentMethods.PromptInitText"/> when its options say so) and returns the parameters to train.
    /// </summary>
    /// <param name="classifier">A new classifier over a freshly loaded model's encoder.</param>
    /// <param name="model">The model (for its tokenizer).</param>
    /// <param name="method">The method.</param>
    public static List<Parameter> Configure(SentimentClassifier classifier, UseLiteModel model, SentimentMethod method)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(method);
        if (method.Targets is { } targets)
        {
            classifier.ApplyTargets(targets);
            classifier.InitializePromptsFromText(text => model.Tokenizer.Encode(text).Select(i => (long)i).ToArray());
            QuantizeIfAsked(classifier, method);
        }

        switch (method.Trains)
        {
            case Trains.AdapterAndHead:
                if (method.Targets is null) throw new InvalidOperationException($"Method '{method.Name}' trains an adapter but has no targets.");
                return classifier.TrainableParameters().ToList();
            case Trains.Head:
            case Trains.Everything:
                var chosen = method.Trains == Trains.Head ? classifier.HeadParameters().ToList() : classifier.parameters().ToList();
                foreach (var p in classifier.parameters()) p.requires_grad = false;
                foreach (var p in chosen) p.requires_grad = true;
                return chosen;
            case Trains.Masked:
                if (method.Selective is null) throw new InvalidOperationException($"Method '{method.Name}' trains masked weights, but has no selection.");
                foreach (var p in classifier.parameters()) p.requires_grad = false;
                var head = classifier.HeadParameters().ToList();
                foreach (var p in head) p.requires_grad = true;
                return head;
            case Trains.Unfrozen:
                if (method.Freezing is null) throw new InvalidOperationException($"Method '{method.Name}' trains what its freezing leaves, but has none.");
                foreach (var p in classifier.parameters()) p.requires_grad = true;
                classifier.FreezeLayers(method.Freezing);
                return classifier.parameters().Where(p => p.requires_grad).ToList();
            case Trains.Inserted:
                if (method.Insert is null) throw new InvalidOperationException($"Method '{method.Name}' trains inserted adapters, but has none.");
                method.Insert(classifier);
                return classifier.TrainableParameters().ToList();
            default:
                throw new ArgumentOutOfRangeException(nameof(method), method.Trains, null);
        }
    }

    /// <summary>Stores the adapted layers' frozen weights quantized when the method asks for it (QLoRA), and says how much
    /// memory that saved.</summary>
    /// <param name="classifier">The classifier, its adapter applied.</param>
    /// <param name="method">The method.</param>
    private static void QuantizeIfAsked(SentimentClassifier classifier, SentimentMethod method)
    {
        if (method.BaseQuantization is { } format)
        {
            var summary = classifier.QuantizeBase(format);
            Console.Error.WriteLine(
                $"  {method.Name}: {summary.Layers} frozen linear weights stored as {format}: {summary.QuantizedBytes:N0} bytes against {summary.DenseBytes:N0} in float32 ({summary.Ratio:F3}x)");
        }
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

    /// <summary>Ids [batch, time] and mask [batch, time] of pre-tokenised sentences, left-aligned and padded with id 0: to
    /// the longest sentence, or to exactly <paramref name="length"/> tokens (longer sentences truncated) when the model
    /// requires one input length (DePT's position table, <see cref="PeftModel.RequiredInputLength"/>).</summary>
    /// <param name="rows">Token ids per sentence.</param>
    /// <param name="length">The required length, or null.</param>
    public static (Tensor Ids, Tensor Mask) Batch(IReadOnlyList<long[]> rows, int? length = null)
    {
        ArgumentNullException.ThrowIfNull(rows);
        int time = length ?? Math.Max(1, rows.Count == 0 ? 1 : rows.Max(r => r.Length));
        var ids = new long[rows.Count * time];
        var mask = new bool[rows.Count * time];
        for (int b = 0; b < rows.Count; b++)
        {
            int n = Math.Min(rows[b].Length, time);
            Array.Copy(rows[b], 0, ids, b * time, n);
            Array.Fill(mask, true, b * time, n);
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
            var (batchIds, mask) = Batch(batch.Select(i => ids[i]).ToArray(), classifier.RequiredInputLength());
            var predicted = classifier.call(batchIds, mask).argmax(1).data<long>().ToArray();
            for (int i = 0; i < batch.Length; i++) if (predicted[i] == examples[batch[i]].Label) correct++;
        }
        return ids.Count == 0 ? 0 : (double)correct / ids.Count;
    }
}
