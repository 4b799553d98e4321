using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Peft;
using Peft.Serialization;
using Peft.Training;
using Quickstart;
using TorchSharp;
using static TorchSharp.torch;

// Quickstart: pre-train a small byte-level GPT on Moby-Dick, adapt it with LoRA to State of the Union
// addresses, and show what the library gives you: perplexity before/after, merge == unmerged forward,
// a PEFT-format adapter on disk, and a fresh model that reproduces the adapted outputs after loading it.

var baseSteps = new Option<int>("--base-steps") { Description = "Pre-training steps on corpus A (Moby-Dick).", DefaultValueFactory = _ => 2000 };
var adaptSteps = new Option<int>("--adapt-steps") { Description = "LoRA steps on corpus B (State of the Union).", DefaultValueFactory = _ => 800 };
var output = new Option<string>("--output") { Description = "Where the base weights and the adapter are written.", DefaultValueFactory = _ => Path.Combine("out", "quickstart") };
var seed = new Option<int>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 42 };
var root = new RootCommand("Peft for .NET quickstart: LoRA-adapt a byte-level GPT from Moby-Dick to State of the Union addresses.")
{
    baseSteps, adaptSteps, output, seed,
};
root.SetAction(async (parse, cancellationToken) =>
{
    var options = new QuickstartOptions(parse.GetValue(baseSteps), parse.GetValue(adaptSteps), parse.GetValue(output)!, parse.GetValue(seed));
    return await QuickstartRun.RunAsync(options, cancellationToken);
});
return await root.Parse(args).InvokeAsync();

internal sealed record QuickstartOptions(int BaseSteps, int AdaptSteps, string Output, int Seed);

internal static class QuickstartRun
{
    private const int BatchSize = 16;

    public static async Task<int> RunAsync(QuickstartOptions options, CancellationToken cancellationToken)
    {
        var total = Stopwatch.StartNew();
        var device = PeftDevice.Default;
        Console.WriteLine($"device: {device.type}, threads: {get_num_threads()}");

        var corpora = await Corpora.LoadAsync(cancellationToken);
        Console.WriteLine($"corpus A (Moby-Dick): {corpora.MobyDick.Length:N0} bytes; corpus B (State of the Union): train {corpora.SotuTrain.Length:N0}, validation {corpora.SotuValidation.Length:N0} bytes");

        Seeding.SetSeed(options.Seed);
        var config = new TinyGptConfig();
        using var model = new TinyGpt(config);
        model.to(device);
        model.PrintTrainableParameters();

        // 1. Pre-train the base on corpus A. The adapters are switched off and the base is made trainable:
        //    this is the "pretrained model" a LoRA user would normally download.
        var sw = Stopwatch.StartNew();
        using (model.DisableAdapters())
        {
            var baseParameters = FullTraining.MakeBaseTrainable(model);
            Train(model, baseParameters, corpora.MobyDick, options.BaseSteps, learningRate: 3e-3, options.Seed, "base", device);
        }
        model.ApplyTrainability(); // back to: adapters trainable, everything else frozen
        Console.WriteLine($"pre-training: {sw.Elapsed.TotalSeconds:F1} s");

        double pplBaseA = Evaluate.Perplexity(model, corpora.MobyDickValidation, config.ContextLength, device);
        double pplBefore = Evaluate.Perplexity(model, corpora.SotuValidation, config.ContextLength, device);
        Console.WriteLine($"perplexity (bytes) before adaptation: Moby-Dick validation {pplBaseA:F2}, State of the Union validation {pplBefore:F2}");

        // 2. LoRA adaptation on corpus B: only the adapter parameters train.
        sw.Restart();
        var summary = model.GetTrainableSummary();
        Console.WriteLine(summary);
        Train(model, model.TrainableParameters().ToList(), corpora.SotuTrain, options.AdaptSteps, learningRate: 3e-3, options.Seed + 1, "lora", device);
        Console.WriteLine($"LoRA adaptation: {sw.Elapsed.TotalSeconds:F1} s");
        double pplAfter = Evaluate.Perplexity(model, corpora.SotuValidation, config.ContextLength, device);
        Console.WriteLine($"perplexity (bytes) on State of the Union validation: before {pplBefore:F2} -> after LoRA {pplAfter:F2}");

        // 3. Merge: the merged model must give the unmerged outputs (within fp32 rounding).
        model.eval();
        using var probe = Evaluate.Batch(corpora.SotuValidation, 4, config.ContextLength, new Random(7)).Input.to(device);
        using var unmergedLogits = Evaluate.Logits(model, probe);
        var baseBefore = model.AdaptedLayers().Select(l => l.Layer.Weight.detach().clone()).ToList();
        model.Merge();
        using var mergedLogits = Evaluate.Logits(model, probe);
        double mergeDiff = (mergedLogits - unmergedLogits).abs().max().item<float>();
        Console.WriteLine($"merged vs unmerged logits: max |diff| = {mergeDiff:E2}");
        model.Unmerge();
        double unmergeDiff = model.AdaptedLayers().Zip(baseBefore)
            .Max(pair => (double)(pair.First.Layer.Weight - pair.Second).abs().max().item<float>());
        foreach (var w in baseBefore) w.Dispose();
        Console.WriteLine($"unmerge restores the base weights: max |diff| = {unmergeDiff:E2}");
        using var adaptedLogits = Evaluate.Logits(model, probe);

        // 4. Save the base weights and the adapter (PEFT format), reload both into a fresh model.
        Directory.CreateDirectory(options.Output);
        string basePath = Path.Combine(options.Output, "base_model.safetensors");
        string adapterDir = Path.Combine(options.Output, "adapter");
        ModelWeights.Save(model, basePath);
        AdapterFiles.Save(model, adapterDir, options: new AdapterSaveOptions { BaseModelNameOrPath = basePath, TaskType = "CAUSAL_LM" });
        Console.WriteLine($"saved {basePath} and {adapterDir}/{{{AdapterFiles.ConfigFileName}, {AdapterFiles.WeightsFileName}}}");

        Seeding.SetSeed(options.Seed + 1000); // a different init, to show the files carry everything
        using var fresh = new TinyGpt(config);
        fresh.to(device);
        ModelWeights.Load(fresh, basePath);
        AdapterFiles.Load(fresh, adapterDir);
        fresh.eval();
        using var reloadedLogits = Evaluate.Logits(fresh, probe);
        double reloadDiff = (reloadedLogits - adaptedLogits).abs().max().item<float>();
        Console.WriteLine($"fresh model + loaded adapter vs trained model: max |diff| = {reloadDiff:E2}");

        Console.WriteLine($"total: {total.Elapsed.TotalSeconds:F1} s");
        bool ok = pplAfter < pplBefore && mergeDiff < 1e-4 && unmergeDiff < 1e-5 && reloadDiff == 0;
        Console.WriteLine(ok ? "quickstart: OK" : "quickstart: FAILED (see the numbers above)");
        return ok ? 0 : 1;
    }

    private static void Train(TinyGpt model, IReadOnlyList<TorchSharp.Modules.Parameter> parameters, byte[] corpus, int steps, double learningRate, int seed, string label, Device device)
    {
        model.train();
        var random = new Random(seed);
        var trainingOptions = new TrainingOptions
        {
            LearningRate = learningRate,
            TotalSteps = steps,
            WarmupSteps = Math.Max(1, steps / 20),
            MinLearningRateRatio = 0.1,
            MaxGradNorm = 1.0,
            LogEvery = Math.Max(1, steps / 5),
        };
        using var trainer = new AdapterTrainer(parameters, trainingOptions, new ConsoleProgress(label));
        for (int step = 0; step < steps; step++)
        {
            var (input, target) = Evaluate.Batch(corpus, BatchSize, model.Config.ContextLength, random);
            using (input)
            using (target)
            using (var x = input.to(device))
            using (var y = target.to(device))
            {
                trainer.TrainStep(() =>
                {
                    var logits = model.call(x);
                    return nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), y.view(-1));
                });
            }
        }
    }

    /// <summary>Prints progress on the training thread (Progress&lt;T&gt; would post to the thread pool and reorder lines).</summary>
    private sealed class ConsoleProgress(string label) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress p) =>
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  [{label}] step {p.Step,4}/{p.TotalSteps} loss {p.Loss:F4} lr {p.LearningRate:E2} |g| {p.GradNorm:F3} {p.Elapsed.TotalSeconds:F1}s"));
    }
}
