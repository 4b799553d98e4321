using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Peft.Training;
using Peft.Training.Checkpoints;

namespace Peft.Hosting.Tests;

public sealed class HostingTests : IDisposable
{
    private readonly string _output = Path.Combine(Path.GetTempPath(), "peft-hosting-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        Environment.ExitCode = 0;
        if (Directory.Exists(_output)) Directory.Delete(_output, recursive: true);
    }

    private IHost BuildHost(Dictionary<string, string?> settings, TestJobSettings? job = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["PeftTraining:OutputDirectory"] = _output,
            ["PeftTraining:TotalSteps"] = "12",
            ["PeftTraining:LearningRate"] = "0.01",
            ["PeftTraining:CheckpointEvery"] = "5",
            ["PeftTraining:LogEvery"] = "4",
            ["PeftTraining:Seed"] = "5",
        });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(job ?? new TestJobSettings());
        builder.Services.AddMetrics();
        builder.AddPeftTraining<TestJob>();
        return builder.Build();
    }

    private static async Task<TrainingRunStatus> RunToEnd(IHost host)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await host.StartAsync(timeout.Token);
        await host.WaitForShutdownAsync(timeout.Token);
        var service = host.Services.GetServices<IHostedService>().OfType<PeftTrainingService<TestJob>>().Single();
        return service.Result ?? throw new InvalidOperationException("the run did not end");
    }

    [Theory]
    [InlineData("PeftTraining:LearningRate", "-1", "PeftTraining:LearningRate must be a finite number > 0")]
    [InlineData("PeftTraining:TotalSteps", "0", "PeftTraining:TotalSteps must be > 0")]
    [InlineData("PeftTraining:WarmupSteps", "50", "PeftTraining:WarmupSteps must be between 0 and TotalSteps (12)")]
    [InlineData("PeftTraining:CheckpointEvery", "0", "PeftTraining:CheckpointEvery must be >= 1")]
    [InlineData("PeftTraining:Device", "tpu", "PeftTraining:Device must be auto, cpu or cuda; got 'tpu'")]
    [InlineData("PeftTraining:DataFile", "/no/such/train.csv", "PeftTraining:DataFile: the file /no/such/train.csv does not exist")]
    [InlineData("PeftTraining:OutputDirectory", "", "PeftTraining:OutputDirectory is required")]
    [InlineData("PeftTraining:Optimizer", "Adam", "PeftTraining:Optimizer must be AdamW or SGD (not case-sensitive); got 'Adam'.")]
    [InlineData("PeftTraining:Optimizer", "", "PeftTraining:Optimizer must be AdamW or SGD (not case-sensitive); got ''.")]
    [InlineData("PeftTraining:Momentum", "1", "PeftTraining:Momentum must be in [0, 1); got 1.")]
    public async Task A_bad_setting_stops_the_host_at_start_with_a_message_naming_it(string key, string value, string expected)
    {
        using var host = BuildHost(new() { [key] = value });
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_output, "checkpoints")));
    }

    [Theory]
    [InlineData("PeftTraining:TotalSteps", "many", "'PeftTraining:TotalSteps'")]
    [InlineData("PeftTraining:OnNonFiniteLoss", "Ignore", "'PeftTraining:OnNonFiniteLoss'")]
    [InlineData("PeftTraining:LearningRat", "0.1", "'LearningRat'")]
    public async Task A_value_that_does_not_bind_or_an_unknown_key_stops_the_host_naming_it(string key, string value, string expected)
    {
        using var host = BuildHost(new() { [key] = value });
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync());
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_run_completes_writes_checkpoints_adapters_status_and_metrics()
    {
        var measurements = new Dictionary<string, double>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == PeftTrainingMetrics.MeterName) l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<long>((i, v, _, _) => { lock (measurements) measurements[i.Name] = measurements.GetValueOrDefault(i.Name) + v; });
        listener.SetMeasurementEventCallback<double>((i, v, _, _) => { lock (measurements) measurements[i.Name] = v; });
        listener.Start();

        using var host = BuildHost(new());
        var result = await RunToEnd(host);

        Assert.Equal(TrainingRunState.Completed, result.State);
        Assert.Equal(12, result.Step);
        Assert.Equal(result, TrainingRunStatus.Read(_output));
        var store = new CheckpointStore(Path.Combine(_output, "checkpoints"));
        Assert.Equal(new[] { "step-00000005", "step-00000010", "step-00000012" }, store.List().Select(Path.GetFileName));
        Assert.True(File.Exists(Path.Combine(_output, "adapters", "default", "adapter_model.safetensors")));
        Assert.Equal(12, measurements["peft.training.steps"]);
        Assert.Equal(12 * 16, measurements["peft.training.tokens"]);
        Assert.Equal(3, measurements["peft.training.checkpoints"]);
        Assert.Equal(BitConverter.DoubleToInt64Bits(result.LastLoss!.Value), BitConverter.DoubleToInt64Bits(measurements["peft.training.loss"]));
        Assert.Equal(0, Environment.ExitCode);
    }

    [Fact]
    public async Task A_nan_step_is_skipped_under_SkipStep_and_no_checkpoint_holds_nan()
    {
        var job = new TestJobSettings();
        job.PoisonedBatches.Add(6);
        using var host = BuildHost(new() { ["PeftTraining:OnNonFiniteLoss"] = "SkipStep" }, job);
        var result = await RunToEnd(host);

        Assert.Equal(TrainingRunState.Completed, result.State);
        var manifest = CheckpointStore.ReadManifest(result.Checkpoint!);
        Assert.Equal(1, manifest.SkippedSteps);
        Assert.True(double.IsFinite(manifest.LastLoss!.Value));
    }

    [Fact]
    public async Task A_nan_step_stops_the_run_under_Throw_keeping_the_last_good_checkpoint()
    {
        var job = new TestJobSettings();
        job.PoisonedBatches.Add(7);
        using var host = BuildHost(new() { ["PeftTraining:OnNonFiniteLoss"] = "Throw" }, job);
        var result = await RunToEnd(host);

        Assert.Equal(TrainingRunState.Failed, result.State);
        Assert.Contains("Training step 8 of 12: the loss is NaN", result.Message, StringComparison.Ordinal);
        Assert.Equal(7, result.Step);
        Assert.EndsWith("step-00000005", result.Checkpoint, StringComparison.Ordinal);
        Assert.Equal(1, Environment.ExitCode);
    }

    [Fact]
    public async Task An_unreadable_checkpoint_fails_the_run_naming_the_path()
    {
        using (var first = BuildHost(new() { ["PeftTraining:TotalSteps"] = "12" }))
        {
            await RunToEnd(first);
        }

        string latest = new CheckpointStore(Path.Combine(_output, "checkpoints")).Latest()!;
        File.WriteAllText(Path.Combine(latest, CheckpointStore.ManifestFileName), "garbage");
        using var second = BuildHost(new());
        var result = await RunToEnd(second);

        Assert.Equal(TrainingRunState.Failed, result.State);
        Assert.Contains(Path.Combine(latest, CheckpointStore.ManifestFileName), result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_adapter_setting_must_name_a_declared_adapter()
    {
        using var host = BuildHost(new() { ["PeftTraining:Adapter"] = "lokr" });
        var result = await RunToEnd(host);

        Assert.Equal(TrainingRunState.Failed, result.State);
        Assert.Contains("PeftTraining:Adapter is 'lokr'", result.Message, StringComparison.Ordinal);
        Assert.Contains("declares the adapters: default", result.Message, StringComparison.Ordinal);
        Assert.Equal(1, Environment.ExitCode);
    }

    [Fact]
    public async Task The_adapter_setting_selects_the_adapter_to_train()
    {
        using var host = BuildHost(new() { ["PeftTraining:Adapter"] = "default" });
        var result = await RunToEnd(host);

        Assert.Equal(TrainingRunState.Completed, result.State);
        Assert.Equal(12, result.Step);
    }

    [Fact]
    public async Task An_unknown_optimizer_is_reported_together_with_the_other_bad_settings()
    {
        using var host = BuildHost(new() { ["PeftTraining:Optimizer"] = "Lion", ["PeftTraining:LearningRate"] = "0" });
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("PeftTraining:Optimizer must be AdamW or SGD", ex.Message, StringComparison.Ordinal);
        Assert.Contains("PeftTraining:LearningRate must be a finite number > 0", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("SGD")]
    [InlineData("sgd")]
    public async Task The_optimizer_setting_selects_SGD_and_the_checkpoints_say_so(string name)
    {
        using var host = BuildHost(new() { ["PeftTraining:Optimizer"] = name, ["PeftTraining:Momentum"] = "0.5" });
        var result = await RunToEnd(host);

        Assert.Equal(TrainingRunState.Completed, result.State);
        var manifest = CheckpointStore.ReadManifest(result.Checkpoint!);
        Assert.Equal("SGD", manifest.Optimizer);
        Assert.Equal(12, manifest.Step);
    }

    [Fact]
    public async Task Resuming_with_another_optimizer_fails_the_run_naming_the_checkpoint_and_both_optimizers()
    {
        using (var first = BuildHost(new() { ["PeftTraining:TotalSteps"] = "12", ["PeftTraining:CheckpointEvery"] = "5" }))
        {
            var done = await RunToEnd(first);
            Assert.Equal("AdamW", CheckpointStore.ReadManifest(done.Checkpoint!).Optimizer);
        }

        using var second = BuildHost(new() { ["PeftTraining:Optimizer"] = "SGD" });
        var result = await RunToEnd(second);

        Assert.Equal(TrainingRunState.Failed, result.State);
        Assert.Contains("step-00000012", result.Message, StringComparison.Ordinal);
        Assert.Contains("written with the AdamW optimizer; this run uses SGD", result.Message, StringComparison.Ordinal);
    }

    private sealed class CountingCallback : ITrainingCallback
    {
        public List<int> Steps { get; } = new();

        public void AfterStep(TrainingCallbackContext context) => Steps.Add(context.Step);
    }

    [Fact]
    public async Task The_jobs_callbacks_run_at_every_step()
    {
        var job = new TestJobSettings();
        var callback = new CountingCallback();
        job.Callbacks.Add(callback);
        using var host = BuildHost(new(), job);
        var result = await RunToEnd(host);

        Assert.Equal(TrainingRunState.Completed, result.State);
        Assert.Equal(Enumerable.Range(1, 12), callback.Steps);
    }
}
