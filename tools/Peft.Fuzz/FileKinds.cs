using System.Text.Json.Nodes;
using Peft.Checkpoints;
using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Serialization;
using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Fuzz;

/// <summary>
/// Every file kind the project reads. A later file kind (a new adapter method's files, a new model family's directory)
/// joins the fuzz suite by adding one <see cref="FileKind"/> here.
/// </summary>
public static class FileKinds
{
    // Declared before All: static fields are initialised in order.
    private static readonly LlamaConfig TinyLlama = new()
    {
        VocabSize = 32, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 64,
    };

    private static readonly Gpt2Config TinyGpt2 = new() { VocabSize = 32, NEmbd = 16, NLayer = 2, NHead = 4, NPositions = 16 };

    private static readonly BertConfig TinyBert = new()
    {
        VocabSize = 32, HiddenSize = 16, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 32, MaxPositionEmbeddings = 16,
    };

    private static readonly TrainingOptions TrainingSetup = new() { TotalSteps = 10, LearningRate = 1e-2, WarmupSteps = 2, Seed = 11 };

    public static IReadOnlyList<FileKind> All { get; } =
    [
        new("safetensors", "a safetensors file of every dtype: SafetensorsFile.Open, then every tensor read",
            SafetensorsSeed, (path, random) => new LoadCase
            {
                Call = "SafetensorsFile.Open + ReadTensor(all)",
                Load = () =>
                {
                    using var reader = SafetensorsFile.Open(path);
                    _ = reader.Metadata.Count;
                    foreach (var info in reader.Tensors)
                    {
                        using var tensor = reader.ReadTensor(info.Name);
                    }
                },
            }),

        new("model-weights", "base weights of an annotated model: ModelWeights.Load",
            dir => Seeded(1, () => new FuzzLoraNet(), model =>
            {
                var path = Path.Combine(dir, "weights.safetensors");
                ModelWeights.Save(model, path);
                return path;
            }),
            (path, _) => Into(new FuzzLoraNet(), model => ModelWeights.Load(model, path), "ModelWeights.Load(FuzzLoraNet)")),

        AdapterKind("adapter-lora", () => new FuzzLoraNet(), "LoRA on q/v with a [Trainable] head (modules_to_save)"),
        AdapterKind("adapter-lokr", () => new FuzzKronNet(), "LoKr on two layers (full and low-rank factors)"),
        AdapterKind("adapter-prompt", () => new FuzzPromptNet(), "prompt tuning, 4 virtual tokens"),

        new("hf-llama", "a Hugging Face Llama directory (config.json + model.safetensors): LlamaForCausalLM.FromPretrained",
            dir => Seeded(3, () => new LlamaForCausalLM(TinyLlama), model =>
            {
                var path = Path.Combine(dir, "llama");
                HfCheckpoint.Save(model, path, TinyLlama.ToHf());
                return path;
            }),
            (path, _) => Built(() => LlamaForCausalLM.FromPretrained(path), "LlamaForCausalLM.FromPretrained")),

        new("hf-llama-sharded", "a sharded Llama directory (config.json + index + 3 shards): HfCheckpoint.Load into an existing model",
            dir => Seeded(4, () => new LlamaForCausalLM(TinyLlama), model =>
            {
                var path = Path.Combine(dir, "llama-sharded");
                HfCheckpoint.Save(model, path, TinyLlama.ToHf(), new CheckpointSaveOptions { MaxShardSizeBytes = 9000 });
                return path;
            }),
            (path, _) => Into(new LlamaForCausalLM(TinyLlama), model => HfCheckpoint.Load(model, path), "HfCheckpoint.Load(LlamaForCausalLM)")),

        new("hf-gpt2", "a Hugging Face GPT-2 directory (Conv1D layout): Gpt2LMHeadModel.FromPretrained",
            dir => Seeded(5, () => new Gpt2LMHeadModel(TinyGpt2), model =>
            {
                var path = Path.Combine(dir, "gpt2");
                model.SavePretrained(path);
                return path;
            }),
            (path, _) => Built(() => Gpt2LMHeadModel.FromPretrained(path), "Gpt2LMHeadModel.FromPretrained")),

        new("hf-bert", "a Hugging Face BERT sequence-classification directory: BertForSequenceClassification.FromPretrained",
            dir => Seeded(6, () => new BertForSequenceClassification(TinyBert), model =>
            {
                var path = Path.Combine(dir, "bert");
                HfCheckpoint.Save(model, path, TinyBert.ToHf());
                return path;
            }),
            (path, _) => Built(() => BertForSequenceClassification.FromPretrained(path), "BertForSequenceClassification.FromPretrained")),

        new("training-checkpoint", "a training checkpoint (manifest, trainable, AdamW state, RNG states): CheckpointStore.Load",
            TrainingCheckpointSeed, TrainingCheckpointLoad, RepairManifest),
    ];

    private static FileKind AdapterKind(string name, Func<nn.Module> create, string what) => new(
        name, $"a PEFT adapter directory, {what}: AdapterFiles.Load (into the declared adapter, or a new one)",
        dir => Seeded(7, create, model =>
        {
            using (no_grad())
            {
                foreach (var parameter in model.AdapterParameters()) parameter.normal_(0, 0.5);
            }
            var path = Path.Combine(dir, "adapter");
            AdapterFiles.Save(model, path, options: new AdapterSaveOptions { BaseModelNameOrPath = "fuzz/base" });
            return path;
        }),
        (path, random) =>
        {
            // One case in four loads under a new name, so the adapter is created from the config first.
            string adapterName = random.Next(4) == 0 ? "fuzz" : "default";
            return Into(create(), model => AdapterFiles.Load(model, path, adapterName), $"AdapterFiles.Load(model, dir, \"{adapterName}\")");
        });

    /// <summary>A model built with a fixed seed, passed to <paramref name="write"/>, then disposed.</summary>
    private static string Seeded<T>(int seed, Func<T> create, Func<T, string> write) where T : nn.Module
    {
        Seeding.SetSeed(seed);
        using var model = create();
        return write(model);
    }

    /// <summary>A load into an existing model: unchanged on failure, finite on success.</summary>
    private static LoadCase Into<T>(T model, Action<T> load, string call) where T : nn.Module
    {
        var snapshot = new Snapshot(model);
        return new LoadCase
        {
            Call = call,
            Load = () => load(model),
            Unchanged = snapshot.Diff,
            Loaded = () => Snapshot.NonFinite(model),
            Cleanup = model.Dispose,
        };
    }

    /// <summary>A load that builds a new model: finite on success (a failure leaves nothing behind to check).</summary>
    private static LoadCase Built(Func<nn.Module> load, string call)
    {
        nn.Module? result = null;
        return new LoadCase
        {
            Call = call,
            Load = () => result = load(),
            Loaded = () => Snapshot.NonFinite(result!),
            Cleanup = () => result?.Dispose(),
        };
    }

    private static string SafetensorsSeed(string dir)
    {
        Seeding.SetSeed(2);
        var path = Path.Combine(dir, "tensors.safetensors");
        using var scope = NewDisposeScope();
        var tensors = new List<KeyValuePair<string, Tensor>>
        {
            new("f32", randn(3, 4)),
            new("f16", randn(5).to(ScalarType.Float16)),
            new("bf16", randn(2, 2).to(ScalarType.BFloat16)),
            new("f64", tensor(1.5, dtype: ScalarType.Float64)),
            new("i64", tensor(new long[] { 1, -2, 3 })),
            new("i32", zeros(new long[] { 0, 2 }, dtype: ScalarType.Int32)),
            new("u8", tensor(new byte[] { 0, 7, 255, 9 })),
            new("bool", tensor(new[] { true, false, true })),
        };
        SafetensorsFile.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "fuzz seed" });
        return path;
    }

    private static string TrainingCheckpointSeed(string dir)
    {
        Seeding.SetSeed(11);
        using var model = new FuzzLoraNet();
        var sampler = new Generator(2024);
        using var trainer = new AdapterTrainer(model.TrainableParameters(), TrainingSetup);
        double loss = 0;
        while (trainer.Step < 3)
        {
            var (x, y) = FuzzLoraNet.Batch(sampler);
            using (x)
            using (y)
            {
                loss = trainer.TrainStep(() => nn.functional.mse_loss(model.call(x), y)).Loss;
            }
        }
        var info = new CheckpointStore(Path.Combine(dir, "run")).Save(model, trainer, 3, sampler, loss);

        // The manifest's timestamp is the only byte that differs between runs: fix it, so seeds are identical.
        var manifestPath = Path.Combine(info.Path, CheckpointStore.ManifestFileName);
        var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!.AsObject();
        manifest["created_utc"] = "2025-01-01T00:00:00+00:00";
        File.WriteAllText(manifestPath, manifest.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        return info.Path;
    }

    private static LoadCase TrainingCheckpointLoad(string path, Random random)
    {
        Seeding.SetSeed(11);
        var model = new FuzzLoraNet();
        var trainer = new AdapterTrainer(model.TrainableParameters(), TrainingSetup);
        var sampler = new Generator(7);
        var snapshot = new Snapshot(model,
            ("trainer.Step", () => $"{trainer.Step}/{trainer.SkippedSteps}"),
            ("torch RNG state", () => Convert.ToHexString(Snapshot.Bytes(torch.get_rng_state()))),
            ("sampler state", () => Convert.ToHexString(Snapshot.Bytes(sampler.get_state()))));
        return new LoadCase
        {
            Call = "CheckpointStore.Load(dir, FuzzLoraNet, AdapterTrainer, sampler)",
            Load = () => CheckpointStore.Load(path, model, trainer, sampler),
            Unchanged = snapshot.Diff,
            Loaded = () => Snapshot.NonFinite(model) ?? (trainer.Step is >= 0 and <= 10 ? null : $"trainer step {trainer.Step} outside [0, 10]"),
            Cleanup = () =>
            {
                trainer.Dispose();
                model.Dispose();
                sampler.Dispose();
            },
        };
    }

    /// <summary>
    /// After a data file of a training checkpoint was mutated, usually (5 cases in 6) update the manifest's size and
    /// SHA-256 of every regular data file, as an attacker or a buggy tool would, so the damage reaches the loader's
    /// deeper checks instead of stopping at the hash.
    /// </summary>
    private static void RepairManifest(string artifact, IReadOnlyList<string> mutated, Random random)
    {
        var manifestPath = Path.Combine(artifact, CheckpointStore.ManifestFileName);
        if (mutated.Any(m => Path.GetFileName(m) == CheckpointStore.ManifestFileName) || random.Next(6) == 0) return;
        try
        {
            if (!Mutator.IsRegularFile(manifestPath)) return;
            var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!.AsObject();
            if (manifest["files"] is not JsonObject files) return;
            foreach (var (name, entry) in files.ToList())
            {
                var file = Path.Combine(artifact, name);
                if (entry is not JsonObject obj || !Mutator.IsRegularFile(file)) continue;
                var bytes = File.ReadAllBytes(file);
                obj["Bytes"] = bytes.LongLength;
                obj["Sha256"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
            }
            File.WriteAllText(manifestPath, manifest.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidOperationException)
        {
            // A manifest the mutation made unreadable stays as it is.
        }
    }
}
