using Peft.Serialization;
using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Hosting.Tests;

public sealed class CheckpointTests : IDisposable
{
    private const int TotalSteps = 24;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "peft-ckpt-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>One deterministic run: everything random comes from the seed; optionally resumes and saves.</summary>
    private sealed class Run : IDisposable
    {
        public Run(string? resumeFrom = null, int totalSteps = TotalSteps, NonFiniteLossPolicy policy = NonFiniteLossPolicy.Throw, OptimizerFactory? optimizer = null)
        {
            Seeding.SetSeed(11);
            Model = new TinyNet();
            Sampler = new Generator(2024);
            Trainer = new AdapterTrainer(Model.TrainableParameters(), new TrainingOptions
            {
                TotalSteps = totalSteps, LearningRate = 1e-2, WarmupSteps = 3, Seed = 11, WeightDecay = 0.01, OnNonFiniteLoss = policy,
                Optimizer = optimizer ?? Optimizers.AdamW, Momentum = 0.8,
            });
            if (resumeFrom is not null) CheckpointStore.Load(resumeFrom, Model, Trainer, Sampler);
        }

        public TinyNet Model { get; }
        public Generator Sampler { get; }
        public AdapterTrainer Trainer { get; }
        public List<double> Losses { get; } = new();

        public void TrainUntil(int step, Func<bool>? poison = null)
        {
            while (Trainer.Step < step)
            {
                var (x, y) = TinyNet.Batch(Sampler);
                using (x)
                using (y)
                {
                    bool bad = poison?.Invoke() ?? false;
                    var p = Trainer.TrainStep(() =>
                    {
                        var loss = nn.functional.mse_loss(Model.call(x), y);
                        return bad ? loss * double.NaN : loss;
                    });
                    Losses.Add(p.Loss);
                }
            }
        }

        public void Dispose()
        {
            Trainer.Dispose();
            Model.Dispose();
            Sampler.Dispose();
        }
    }

    private static int[] FloatBits(Tensor t)
    {
        using var detached = t.detach().contiguous();
        return detached.data<float>().ToArray().Select(BitConverter.SingleToInt32Bits).ToArray();
    }

    private static long[] Bits(IEnumerable<double> values) => values.Select(BitConverter.DoubleToInt64Bits).ToArray();

    [Fact]
    public void Resumed_run_reproduces_the_uninterrupted_losses_and_weights_bit_for_bit()
    {
        using var full = new Run();
        full.TrainUntil(TotalSteps);

        var store = new CheckpointStore(_root);
        using (var first = new Run())
        {
            first.TrainUntil(9);
            store.Save(first.Model, first.Trainer, dataPosition: first.Trainer.Step, first.Sampler, first.Losses[^1]);
            first.TrainUntil(13); // work after the checkpoint is lost, as in a kill
        }

        using var resumed = new Run(store.Latest());
        Assert.Equal(9, resumed.Trainer.Step);
        resumed.TrainUntil(TotalSteps);

        Assert.Equal(Bits(full.Losses.Skip(9)), Bits(resumed.Losses));
        foreach (var ((name, a), (_, b)) in full.Model.named_parameters().Zip(resumed.Model.named_parameters()))
        {
            Assert.True(FloatBits(a).SequenceEqual(FloatBits(b)), $"parameter {name} differs after resume");
        }
    }

    [Fact]
    public void Without_the_optimizer_and_rng_state_the_resume_would_differ()
    {
        // Guards the test above against passing trivially: weights alone are not enough.
        using var full = new Run();
        full.TrainUntil(TotalSteps);

        var store = new CheckpointStore(_root);
        using (var first = new Run())
        {
            first.TrainUntil(9);
            store.Save(first.Model, first.Trainer, first.Trainer.Step, first.Sampler);
        }

        using var resumed = new Run(store.Latest());
        // Reset the AdamW moments to zero: the losses must then diverge.
        using (no_grad())
        {
            for (int i = 0; i < resumed.Trainer.Parameters.Count; i++)
            {
                resumed.Trainer.Optimizer.GetState(i, "exp_avg").zero_();
                resumed.Trainer.Optimizer.GetState(i, "exp_avg_sq").zero_();
            }
        }

        resumed.TrainUntil(TotalSteps);
        Assert.NotEqual(Bits(full.Losses.Skip(9)), Bits(resumed.Losses));
    }

    [Fact]
    public void Checkpoint_directory_holds_the_manifest_and_files_and_keeps_the_last_n()
    {
        var store = new CheckpointStore(_root, keepLast: 2);
        using var run = new Run();
        foreach (int step in new[] { 2, 4, 6 })
        {
            run.TrainUntil(step);
            store.Save(run.Model, run.Trainer, step, run.Sampler, run.Losses[^1]);
        }

        Assert.Equal(new[] { "step-00000004", "step-00000006" }, store.List().Select(Path.GetFileName));
        Assert.Empty(Directory.GetDirectories(_root, ".*"));
        var manifest = CheckpointStore.ReadManifest(store.Latest()!);
        Assert.Equal(6, manifest.Step);
        Assert.Equal(TotalSteps, manifest.TotalSteps);
        Assert.Equal(6, manifest.DataPosition);
        Assert.True(manifest.HasSamplerState);
        Assert.Equal(BitConverter.DoubleToInt64Bits(run.Losses[^1]), BitConverter.DoubleToInt64Bits(manifest.LastLoss!.Value));
        Assert.Equal(run.Trainer.Parameters.Count, manifest.Parameters.Count);
        Assert.Contains(manifest.Parameters, n => n.Contains("lora_A", StringComparison.Ordinal));
        Assert.Contains(manifest.Parameters, n => n.StartsWith("head.", StringComparison.Ordinal));
        Assert.Equal(
            new[] { CheckpointStore.OptimizerFileName, CheckpointStore.RandomStateFileName, CheckpointStore.ParametersFileName },
            manifest.Files.Keys.OrderBy(k => k, StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(CheckpointStore.ParametersFileName)]
    [InlineData(CheckpointStore.OptimizerFileName)]
    [InlineData(CheckpointStore.RandomStateFileName)]
    [InlineData(CheckpointStore.ManifestFileName)]
    public void A_failure_mid_write_leaves_the_previous_checkpoint_intact_and_no_new_one(string failingFile)
    {
        var store = new CheckpointStore(_root);
        using var run = new Run();
        run.TrainUntil(3);
        var previous = store.Save(run.Model, run.Trainer, 3, run.Sampler);
        run.TrainUntil(5);
        store.BeforeFileWritten = name =>
        {
            if (name == failingFile) throw new IOException("No space left on device (simulated)");
        };

        var ex = Assert.Throws<CheckpointException>(() => store.Save(run.Model, run.Trainer, 5, run.Sampler));
        Assert.Contains("step-00000005", ex.Message, StringComparison.Ordinal);
        Assert.Contains("No space left on device", ex.Message, StringComparison.Ordinal);
        Assert.Equal(new[] { previous.Path }, store.List());
        Assert.Empty(Directory.GetDirectories(_root, ".*"));
        Assert.Equal(3, CheckpointStore.ReadManifest(previous.Path).Step);
    }

    [Fact]
    public void A_leftover_temporary_directory_from_a_crash_is_ignored_and_cleaned_up()
    {
        var store = new CheckpointStore(_root);
        Directory.CreateDirectory(Path.Combine(_root, ".tmp-step-00000007-abc"));
        File.WriteAllText(Path.Combine(_root, ".tmp-step-00000007-abc", CheckpointStore.ParametersFileName), "half");
        Assert.Null(store.Latest());

        using var run = new Run();
        run.TrainUntil(2);
        store.Save(run.Model, run.Trainer, 2, run.Sampler);
        Assert.Empty(Directory.GetDirectories(_root, ".*"));
        Assert.Single(store.List());
    }

    [Fact]
    public void Never_writes_a_checkpoint_with_nan_weights()
    {
        var store = new CheckpointStore(_root);
        using var run = new Run();
        run.TrainUntil(2);
        store.Save(run.Model, run.Trainer, 2, run.Sampler);
        using (no_grad()) run.Trainer.Parameters[0][0, 0] = torch.tensor(float.NaN);

        var ex = Assert.Throws<CheckpointException>(() => store.Save(run.Model, run.Trainer, 2, run.Sampler));
        Assert.Contains("NaN", ex.Message, StringComparison.Ordinal);
        Assert.Single(store.List());
    }

    [Fact]
    public void A_skipped_nan_step_is_counted_and_the_checkpoint_stays_finite()
    {
        var store = new CheckpointStore(_root);
        using var run = new Run(policy: NonFiniteLossPolicy.SkipStep);
        int calls = 0;
        run.TrainUntil(4, poison: () => ++calls == 3);
        var info = store.Save(run.Model, run.Trainer, 4, run.Sampler);
        Assert.Equal(1, info.Manifest.SkippedSteps);
        Assert.True(double.IsNaN(run.Losses[2]));
    }

    [Fact]
    public void Corrupt_or_missing_files_fail_with_the_path_named()
    {
        var store = new CheckpointStore(_root);
        string path;
        using (var run = new Run())
        {
            run.TrainUntil(2);
            path = store.Save(run.Model, run.Trainer, 2, run.Sampler).Path;
        }

        string optimizer = Path.Combine(path, CheckpointStore.OptimizerFileName);
        var bytes = File.ReadAllBytes(optimizer);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(optimizer, bytes);
        using (var run = new Run())
        {
            var ex = Assert.Throws<CheckpointException>(() => CheckpointStore.Load(path, run.Model, run.Trainer, run.Sampler));
            Assert.Equal(optimizer, ex.CheckpointPath);
            Assert.Contains("SHA-256", ex.Message, StringComparison.Ordinal);
            Assert.Equal(0, run.Trainer.Step);
        }

        File.Delete(Path.Combine(path, CheckpointStore.ManifestFileName));
        var missing = Assert.Throws<CheckpointException>(() => CheckpointStore.ReadManifest(path));
        Assert.Contains(Path.Combine(path, CheckpointStore.ManifestFileName), missing.Message, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(path, CheckpointStore.ManifestFileName), "{ not json");
        var unreadable = Assert.Throws<CheckpointException>(() => CheckpointStore.ReadManifest(path));
        Assert.Contains("not valid JSON", unreadable.Message, StringComparison.Ordinal);

        var absent = Assert.Throws<CheckpointException>(() => CheckpointStore.ReadManifest(Path.Combine(_root, "step-00000099")));
        Assert.Contains("step-00000099", absent.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_checkpoint_from_a_different_schedule_is_refused()
    {
        var store = new CheckpointStore(_root);
        string path;
        using (var run = new Run())
        {
            run.TrainUntil(2);
            path = store.Save(run.Model, run.Trainer, 2, run.Sampler).Path;
        }

        using var other = new Run(totalSteps: TotalSteps + 1);
        var ex = Assert.Throws<CheckpointException>(() => CheckpointStore.Load(path, other.Model, other.Trainer, other.Sampler));
        Assert.Contains("TotalSteps", ex.Message, StringComparison.Ordinal);
    }
}

/// <summary>Checkpoints of optimizers other than AdamW, optimizer kinds, and checkpoints written before kinds were recorded.</summary>
public sealed class OptimizerCheckpointTests : IDisposable
{
    private const int TotalSteps = 24;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "peft-ckpt-optim-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>The run of <see cref="CheckpointTests"/> (the legacy test data was written by it) with a chosen optimizer.</summary>
    private sealed class Run : IDisposable
    {
        public Run(OptimizerFactory optimizer, string? resumeFrom = null, double learningRate = 1e-2)
        {
            Seeding.SetSeed(11);
            Model = new TinyNet();
            Sampler = new Generator(2024);
            Trainer = new AdapterTrainer(Model.TrainableParameters(), new TrainingOptions
            {
                TotalSteps = TotalSteps, LearningRate = learningRate, WarmupSteps = 3, Seed = 11, WeightDecay = 0.01, Momentum = 0.8, Optimizer = optimizer,
            });
            if (resumeFrom is not null) CheckpointStore.Load(resumeFrom, Model, Trainer, Sampler);
        }

        public TinyNet Model { get; }
        public Generator Sampler { get; }
        public AdapterTrainer Trainer { get; }
        public List<double> Losses { get; } = new();

        public void TrainUntil(int step)
        {
            while (Trainer.Step < step)
            {
                var (x, y) = TinyNet.Batch(Sampler);
                using (x)
                using (y)
                {
                    Losses.Add(Trainer.TrainStep(() => nn.functional.mse_loss(Model.call(x), y)).Loss);
                }
            }
        }

        public void Dispose()
        {
            Trainer.Dispose();
            Model.Dispose();
            Sampler.Dispose();
        }
    }

    private static int[] FloatBits(Tensor t)
    {
        using var detached = t.detach().contiguous();
        return detached.data<float>().ToArray().Select(BitConverter.SingleToInt32Bits).ToArray();
    }

    private static long[] Bits(IEnumerable<double> values) => values.Select(BitConverter.DoubleToInt64Bits).ToArray();

    private static void AssertSameWeights(Run expected, Run actual)
    {
        foreach (var ((name, a), (_, b)) in expected.Model.named_parameters().Zip(actual.Model.named_parameters()))
        {
            Assert.True(FloatBits(a).SequenceEqual(FloatBits(b)), $"parameter {name} differs after resume");
        }
    }

    /// <summary>Trains to step 9, checkpoints, goes on to 13 (lost work), then resumes and checks the rest bit for bit.</summary>
    private void AssertResumeIsBitwise(OptimizerFactory optimizer, Action<string>? editCheckpoint = null, double learningRate = 1e-2)
    {
        using var full = new Run(optimizer, learningRate: learningRate);
        full.TrainUntil(TotalSteps);

        var store = new CheckpointStore(_root);
        using (var first = new Run(optimizer, learningRate: learningRate))
        {
            first.TrainUntil(9);
            store.Save(first.Model, first.Trainer, first.Trainer.Step, first.Sampler, first.Losses[^1]);
            first.TrainUntil(13);
        }

        editCheckpoint?.Invoke(store.Latest()!);
        using var resumed = new Run(optimizer, store.Latest(), learningRate);
        Assert.Equal(9, resumed.Trainer.Step);
        resumed.TrainUntil(TotalSteps);
        Assert.Equal(Bits(full.Losses.Skip(9)), Bits(resumed.Losses));
        AssertSameWeights(full, resumed);
    }

    [Fact]
    public void An_SGD_run_resumes_bit_for_bit()
    {
        AssertResumeIsBitwise(Optimizers.Sgd);

        // Guard: without the momentum buffers the resumed run would differ.
        using var full = new Run(Optimizers.Sgd);
        full.TrainUntil(TotalSteps);
        using var resumed = new Run(Optimizers.Sgd, new CheckpointStore(_root).Latest());
        using (no_grad())
        {
            for (int i = 0; i < resumed.Trainer.Parameters.Count; i++) resumed.Trainer.Optimizer.GetState(i, "momentum_buffer").zero_();
        }

        resumed.TrainUntil(TotalSteps);
        Assert.NotEqual(Bits(full.Losses.Skip(9)), Bits(resumed.Losses));
    }

    [Fact]
    public void A_MeZO_run_resumes_bit_for_bit_with_no_optimizer_state()
    {
        AssertResumeIsBitwise(Optimizers.MeZO(seed: 5), learningRate: 1e-4);
        var manifest = CheckpointStore.ReadManifest(new CheckpointStore(_root).Latest()!);
        Assert.Equal("MeZO", manifest.Optimizer);
        using var reader = SafetensorsFile.Open(Path.Combine(new CheckpointStore(_root).Latest()!, CheckpointStore.OptimizerFileName));
        Assert.Empty(reader.Tensors);
    }

    [Fact]
    public void The_optimizer_file_holds_what_the_optimizer_exposes_and_the_manifest_names_it()
    {
        var store = new CheckpointStore(_root, keepLast: 10);
        using var sgd = new Run(Optimizers.Sgd);
        sgd.TrainUntil(2);
        var saved = store.Save(sgd.Model, sgd.Trainer, 2, sgd.Sampler);
        Assert.Equal("SGD", saved.Manifest.Optimizer);
        Assert.Equal("SGD", CheckpointStore.ReadManifest(saved.Path).Optimizer);
        Assert.Contains("\"optimizer\": \"SGD\"", File.ReadAllText(Path.Combine(saved.Path, CheckpointStore.ManifestFileName)), StringComparison.Ordinal);
        using (var reader = SafetensorsFile.Open(Path.Combine(saved.Path, CheckpointStore.OptimizerFileName)))
        {
            Assert.Equal(saved.Manifest.Parameters.Select(n => n + "/momentum_buffer").Order(StringComparer.Ordinal), reader.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            Assert.Empty(reader.Metadata);
            for (int i = 0; i < sgd.Trainer.Parameters.Count; i++)
            {
                using var stored = reader.ReadTensor(saved.Manifest.Parameters[i] + "/momentum_buffer");
                Assert.Equal(FloatBits(sgd.Trainer.Optimizer.GetState(i, "momentum_buffer")), FloatBits(stored));
            }
        }

        using var adam = new Run(Optimizers.AdamW);
        adam.TrainUntil(3);
        var adamSaved = store.Save(adam.Model, adam.Trainer, 3, adam.Sampler);
        Assert.Equal("AdamW", adamSaved.Manifest.Optimizer);
        using (var reader = SafetensorsFile.Open(Path.Combine(adamSaved.Path, CheckpointStore.OptimizerFileName)))
        {
            Assert.Equal(
                adamSaved.Manifest.Parameters.SelectMany(n => new[] { n + "/exp_avg", n + "/exp_avg_sq" }).Order(StringComparer.Ordinal),
                reader.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            Assert.Equal(adamSaved.Manifest.Parameters.Select(n => n + "/step").Order(StringComparer.Ordinal), reader.Metadata.Keys.Order(StringComparer.Ordinal));
            Assert.All(reader.Metadata.Values, v => Assert.Equal("3", v));
        }
    }

    [Fact]
    public void Resuming_with_another_optimizer_is_refused_naming_the_directory_and_both_kinds()
    {
        var store = new CheckpointStore(_root);
        string path;
        using (var adam = new Run(Optimizers.AdamW))
        {
            adam.TrainUntil(4);
            path = store.Save(adam.Model, adam.Trainer, 4, adam.Sampler).Path;
        }

        using var sgd = new Run(Optimizers.Sgd);
        var before = sgd.Trainer.Parameters.Select(FloatBits).ToList();
        var ex = Assert.Throws<CheckpointException>(() => CheckpointStore.Load(path, sgd.Model, sgd.Trainer, sgd.Sampler));

        Assert.Equal(path, ex.CheckpointPath);
        Assert.Contains("written with the AdamW optimizer; this run uses SGD", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, sgd.Trainer.Step);
        Assert.Equal(before, sgd.Trainer.Parameters.Select(FloatBits).ToList());
    }

    /// <summary>A checkpoint whose manifest has no "optimizer" (as before kinds were recorded) is AdamW's and resumes exactly.</summary>
    [Fact]
    public void A_checkpoint_without_an_optimizer_kind_resumes_as_AdamW_bit_for_bit() =>
        AssertResumeIsBitwise(Optimizers.AdamW, path =>
        {
            string manifest = Path.Combine(path, CheckpointStore.ManifestFileName);
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(manifest))!.AsObject();
            Assert.True(json.Remove("optimizer"));
            File.WriteAllText(manifest, json.ToJsonString());
            Assert.Null(CheckpointStore.ReadManifest(path).Optimizer);
        });

    private static string LegacyCheckpoint => Path.Combine(AppContext.BaseDirectory, "TestData", "legacy-adamw", "step-00000009");

    /// <summary>
    /// The checkpoint in TestData was written by the code before optimizers were pluggable. Loading it and saving again
    /// must write the very same bytes: the state was restored exactly (this holds on any machine, unlike comparing a
    /// continued run with one computed here).
    /// </summary>
    [Fact]
    public void A_checkpoint_written_before_optimizer_kinds_loads_exactly_and_saves_back_byte_for_byte()
    {
        var legacy = CheckpointStore.ReadManifest(LegacyCheckpoint);
        Assert.Null(legacy.Optimizer);

        using var run = new Run(Optimizers.AdamW);
        var info = CheckpointStore.Load(LegacyCheckpoint, run.Model, run.Trainer, run.Sampler);
        Assert.Equal((9, 0), (run.Trainer.Step, run.Trainer.SkippedSteps));
        Assert.Equal(9, run.Trainer.Optimizer.GetScalarState(0, "step"));

        var again = new CheckpointStore(_root).Save(run.Model, run.Trainer, info.Manifest.DataPosition, run.Sampler, info.Manifest.LastLoss);
        foreach (string file in new[] { CheckpointStore.ParametersFileName, CheckpointStore.OptimizerFileName, CheckpointStore.RandomStateFileName })
        {
            Assert.True(
                File.ReadAllBytes(Path.Combine(LegacyCheckpoint, file)).SequenceEqual(File.ReadAllBytes(Path.Combine(again.Path, file))),
                $"{file} differs from the legacy checkpoint's");
        }

        Assert.Equal("AdamW", again.Manifest.Optimizer);
        Assert.Equal(legacy with { Optimizer = "AdamW", CreatedUtc = again.Manifest.CreatedUtc, Parameters = again.Manifest.Parameters, Files = again.Manifest.Files }, again.Manifest);
        Assert.Equal(legacy.Parameters, again.Manifest.Parameters);
        Assert.Equal(legacy.Files, again.Manifest.Files);

        // The old checkpoint still trains on: a step from it works and moves the weights.
        var before = run.Trainer.Parameters.Select(FloatBits).ToList();
        run.TrainUntil(10);
        Assert.NotEqual(before, run.Trainer.Parameters.Select(FloatBits).ToList());
    }

    [Fact]
    public void A_checkpoint_written_before_optimizer_kinds_is_refused_by_SGD_saying_why()
    {
        using var run = new Run(Optimizers.Sgd);
        var ex = Assert.Throws<CheckpointException>(() => CheckpointStore.Load(LegacyCheckpoint, run.Model, run.Trainer, run.Sampler));
        Assert.Contains("written with the AdamW optimizer (a checkpoint that names no optimizer is AdamW's); this run uses SGD", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, run.Trainer.Step);
    }
}
