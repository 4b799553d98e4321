using AdapterBasics;
using Peft;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

// Task: does token 7 occur in the sequence? Synthetic, so the sample needs no data download.
static (Tensor Ids, Tensor Labels) MakeBatch(Generator generator, int batch)
{
    var ids = randint(1, TinyClassifier.Vocabulary, new long[] { batch, 12 }, generator: generator);
    var labels = ids.eq(7).any(1).to(ScalarType.Int64);
    return (ids, labels);
}

static double Accuracy(TinyClassifier model, Tensor ids, Tensor labels)
{
    using var _ = no_grad();
    using var predictions = model.call(ids).argmax(1);
    return predictions.eq(labels).to(ScalarType.Float32).mean().item<float>();
}

Seeding.SetSeed(1);
var generator = new Generator().manual_seed(1);
using var model = new TinyClassifier();
model.PrintTrainableParameters();

var (testIds, testLabels) = MakeBatch(new Generator().manual_seed(99), 512);
double before = Accuracy(model, testIds, testLabels);

using (var trainer = new AdapterTrainer(model.TrainableParameters(), new TrainingOptions { LearningRate = 3e-2, TotalSteps = 300, WarmupSteps = 10, LogEvery = 100 }))
{
    for (int step = 0; step < 300; step++)
    {
        var (ids, labels) = MakeBatch(generator, 64);
        using (ids)
        using (labels)
            trainer.TrainStep(() => nn.functional.cross_entropy(model.call(ids), labels));
    }
}
double after = Accuracy(model, testIds, testLabels);
Console.WriteLine($"accuracy: before {before:P1}, after {after:P1}");

model.eval();
using var noGrad = no_grad();
using var unmerged = model.call(testIds);
model.Merge();
using var merged = model.call(testIds);
double mergeDiff = (merged - unmerged).abs().max().item<float>();
model.Unmerge();
Console.WriteLine($"merged vs unmerged: max |diff| = {mergeDiff:E2}");

string dir = Path.Combine(Path.GetTempPath(), "adapter-basics-" + Environment.ProcessId);
ModelWeights.Save(model, Path.Combine(dir, "base.safetensors"));
AdapterFiles.Save(model, Path.Combine(dir, "lora"), AdapterNames.Default);
AdapterFiles.Save(model, Path.Combine(dir, "kron"), "kron");
AdapterFiles.Save(model, Path.Combine(dir, "prompt"), "prompt");

Seeding.SetSeed(2);
using var fresh = new TinyClassifier();
ModelWeights.Load(fresh, Path.Combine(dir, "base.safetensors"));
AdapterFiles.Load(fresh, Path.Combine(dir, "lora"), AdapterNames.Default);
AdapterFiles.Load(fresh, Path.Combine(dir, "kron"), "kron");
AdapterFiles.Load(fresh, Path.Combine(dir, "prompt"), "prompt");
fresh.eval();
using var reloaded = fresh.call(testIds);
double reloadDiff = (reloaded - unmerged).abs().max().item<float>();
Console.WriteLine($"fresh model + loaded adapters: max |diff| = {reloadDiff:E2}");
Directory.Delete(dir, recursive: true);

// Configuration targeting: PEFT's target_modules on a class that declares no adapter, applied by generated code.
using var mlp = new TinyMlp();
using var x = randn(4, 16);
using var plainOut = mlp.call(x);
var targeted = mlp.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 2, Alpha: 4)));
using var targetedOut = mlp.call(x);
double targetDiff = (targetedOut - plainOut).abs().max().item<float>();
Console.WriteLine($"all-linear targets: {string.Join(", ", targeted)}; {mlp.GetTrainableSummary().TrainableParameters} trainable; output change at init {targetDiff:E2}");

bool ok = after > before + 0.05 && mergeDiff < 1e-4 && reloadDiff < 1e-5 && targeted.Count == 2 && targetDiff == 0;
Console.WriteLine(ok ? "adapter-basics: OK" : "adapter-basics: FAILED");
return ok ? 0 : 1;
