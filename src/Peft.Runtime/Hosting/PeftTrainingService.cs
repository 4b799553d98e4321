using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Peft.Serialization;
using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;

namespace Peft.Hosting;

/// <summary>The state of a hosted run, as written to <c>status.json</c>.</summary>
public enum TrainingRunState
{
    /// <summary>Training is in progress.</summary>
    Running,

    /// <summary>All steps are done; the adapters were exported.</summary>
    Completed,

    /// <summary>The host asked to stop (Ctrl+C, SIGTERM, shutdown): the current step finished and a checkpoint was written.</summary>
    Stopped,

    /// <summary>The run stopped with an error (see <see cref="TrainingRunStatus.Message"/>).</summary>
    Failed,
}

/// <summary>The content of <c>status.json</c> in <see cref="PeftTrainingOptions.OutputDirectory"/>.</summary>
/// <param name="State">Where the run is.</param>
/// <param name="Step">Completed steps.</param>
/// <param name="TotalSteps">Steps of the run.</param>
/// <param name="LastLoss">The last finite loss, or null.</param>
/// <param name="Checkpoint">The latest checkpoint directory, or null.</param>
/// <param name="Message">The error for <see cref="TrainingRunState.Failed"/>, otherwise null.</param>
public sealed record TrainingRunStatus(
    [property: JsonConverter(typeof(JsonStringEnumConverter<TrainingRunState>))] TrainingRunState State,
    int Step,
    int TotalSteps,
    double? LastLoss,
    string? Checkpoint,
    string? Message)
{
    /// <summary>The file name in the output directory.</summary>
    public const string FileName = "status.json";

    /// <summary>Reads <c>status.json</c> from an output directory.</summary>
    /// <param name="outputDirectory">The run's output directory.</param>
    /// <returns>The status.</returns>
    public static TrainingRunStatus Read(string outputDirectory) =>
        JsonSerializer.Deserialize<TrainingRunStatus>(File.ReadAllBytes(Path.Combine(outputDirectory, FileName)))
        ?? throw new InvalidDataException($"{Path.Combine(outputDirectory, FileName)} is empty.");
}

/// <summary>
/// Runs one training job as a <see cref="BackgroundService"/>: seeds, creates the <typeparamref name="TJob"/>, resumes
/// from the latest checkpoint, trains with <see cref="AdapterTrainer"/>, logs and measures every step, writes a
/// checkpoint every <see cref="PeftTrainingOptions.CheckpointEvery"/> steps, at the end and when the host stops, and
/// exports the adapters (PEFT format) to <c>adapters/NAME</c> when done.
/// </summary>
/// <typeparam name="TJob">The job: model and data.</typeparam>
/// <remarks>
/// Training runs on a thread-pool thread. A stop request (Ctrl+C, SIGTERM, <c>StopApplication</c>) is honoured between
/// steps: the step in progress finishes, a checkpoint is written and the service returns, well within the host's
/// shutdown timeout unless one step takes longer than that. A killed process loses only the steps since the last
/// checkpoint. A failure is logged, written to <c>status.json</c>, sets the process exit code to 1 and (with
/// <see cref="PeftTrainingOptions.StopHostWhenDone"/>) stops the host.
/// </remarks>
public sealed class PeftTrainingService<TJob> : BackgroundService
    where TJob : class, ITrainingJob
{
    private static readonly JsonSerializerOptions s_statusJson = new() { WriteIndented = true };

    private readonly IServiceProvider _services;
    private readonly PeftTrainingOptions _options;
    private readonly PeftTrainingMetrics _metrics;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger _logger;

    /// <summary>Creates the service (dependency injection does this).</summary>
    public PeftTrainingService(
        IServiceProvider services,
        IOptions<PeftTrainingOptions> options,
        PeftTrainingMetrics metrics,
        IHostApplicationLifetime lifetime,
        ILogger<PeftTrainingService<TJob>> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _services = services;
        _options = options.Value;
        _metrics = metrics;
        _lifetime = lifetime;
        _logger = logger;
    }

    /// <summary>The run's outcome once it ended, or null while it runs.</summary>
    public TrainingRunStatus? Result { get; private set; }

    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.Run(() =>
        {
            Result = Train(stoppingToken);
            if (Result.State == TrainingRunState.Failed)
            {
                Environment.ExitCode = 1;
            }

            if (_options.StopHostWhenDone && Result.State != TrainingRunState.Stopped)
            {
                _lifetime.StopApplication();
            }
        }, CancellationToken.None);

    private TrainingRunStatus Train(CancellationToken stoppingToken)
    {
        var o = _options;
        string output = Path.GetFullPath(o.OutputDirectory);
        var store = new CheckpointStore(Path.Combine(output, "checkpoints"), o.KeepCheckpoints);
        int step = 0;
        double? lastLoss = null;
        try
        {
            Directory.CreateDirectory(output);
            var device = string.Equals(o.Device, "auto", StringComparison.OrdinalIgnoreCase) ? PeftDevice.Default : torch.device(o.Device.ToLowerInvariant());
            Seeding.SetSeed(o.Seed);
            using var job = ActivatorUtilities.CreateInstance<TJob>(_services);
            var model = job.Model;
            model.to(device);
            using var trainer = new AdapterTrainer(model.TrainableParameters(), o.ToTrainingOptions());
            long trainable = trainer.Parameters.Sum(p => p.numel());
            TrainingLog.Starting(_logger, model.GetType().Name, trainable, o.TotalSteps, output, device.ToString());

            int savedStep = -1;
            if (o.Resume && store.Latest() is { } latest)
            {
                var info = CheckpointStore.Load(latest, model, trainer, job.DataSampler);
                savedStep = info.Manifest.Step;
                lastLoss = info.Manifest.LastLoss;
                TrainingLog.Resumed(_logger, info.Path, info.Manifest.Step, info.Manifest.DataPosition);
            }

            step = trainer.Step;
            WriteStatus(output, new TrainingRunStatus(TrainingRunState.Running, step, o.TotalSteps, lastLoss, store.Latest(), null));
            int firstStep = trainer.Step;
            var clock = Stopwatch.StartNew();
            while (trainer.Step < o.TotalSteps)
            {
                if (stoppingToken.IsCancellationRequested)
                {
                    string path = savedStep == trainer.Step ? store.Latest()! : Save(store, job, trainer, lastLoss);
                    TrainingLog.Stopped(_logger, trainer.Step, path);
                    return Finish(output, new TrainingRunStatus(TrainingRunState.Stopped, trainer.Step, o.TotalSteps, lastLoss, path, null));
                }

                long started = Stopwatch.GetTimestamp();
                long batch = trainer.Step;
                var progress = trainer.TrainStep(() => job.ComputeLoss(batch, device));
                step = trainer.Step;
                Record(progress, Stopwatch.GetElapsedTime(started).TotalSeconds, job.TokensPerStep);
                if (!progress.Skipped)
                {
                    lastLoss = progress.Loss;
                }

                if (progress.Skipped)
                {
                    TrainingLog.Skipped(_logger, progress.Step, progress.TotalSteps, progress.Loss, progress.GradNorm);
                }
                else if (progress.Step % o.LogEvery == 0 || progress.Step == o.TotalSteps)
                {
                    double done = progress.Step - firstStep;
                    double seconds = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                    var eta = TimeSpan.FromSeconds(Math.Round(seconds / done * (o.TotalSteps - progress.Step)));
                    TrainingLog.Progress(_logger, progress.Step, progress.TotalSteps, progress.Loss, progress.LearningRate, progress.GradNorm,
                        done * job.TokensPerStep / seconds, eta);
                }

                if (trainer.Step % o.CheckpointEvery == 0 || trainer.Step == o.TotalSteps)
                {
                    Save(store, job, trainer, lastLoss);
                    savedStep = trainer.Step;
                }
            }

            string adapters = Path.Combine(output, "adapters");
            foreach (string name in model.AdapterNames())
            {
                AdapterFiles.Save(model, Path.Combine(adapters, name), name);
            }

            TrainingLog.Completed(_logger, trainer.Step, lastLoss ?? double.NaN, adapters);
            return Finish(output, new TrainingRunStatus(TrainingRunState.Completed, trainer.Step, o.TotalSteps, lastLoss, store.Latest(), null));
        }
        catch (Exception ex)
        {
            TrainingLog.Failed(_logger, ex, ex.Message);
            return Finish(output, new TrainingRunStatus(TrainingRunState.Failed, step, o.TotalSteps, lastLoss, SafeLatest(store), ex.Message));
        }
    }

    private string Save(CheckpointStore store, TJob job, AdapterTrainer trainer, double? lastLoss)
    {
        long started = Stopwatch.GetTimestamp();
        var info = store.Save(job.Model, trainer, dataPosition: trainer.Step, job.DataSampler, lastLoss);
        var elapsed = Stopwatch.GetElapsedTime(started);
        _metrics.Checkpoints.Add(1);
        _metrics.CheckpointDuration.Record(elapsed.TotalSeconds);
        TrainingLog.CheckpointWritten(_logger, info.Path, info.Manifest.Step, elapsed.TotalMilliseconds);
        return info.Path;
    }

    private void Record(TrainingProgress progress, double seconds, long tokens)
    {
        _metrics.Steps.Add(1);
        _metrics.StepDuration.Record(seconds);
        _metrics.LearningRate.Record(progress.LearningRate);
        if (progress.Skipped)
        {
            _metrics.SkippedSteps.Add(1);
            return;
        }

        _metrics.Tokens.Add(tokens);
        _metrics.Loss.Record(progress.Loss);
    }

    private TrainingRunStatus Finish(string output, TrainingRunStatus status)
    {
        try
        {
            WriteStatus(output, status);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TrainingLog.Failed(_logger, ex, $"cannot write {Path.Combine(output, TrainingRunStatus.FileName)}: {ex.Message}");
        }

        return status;
    }

    private static string? SafeLatest(CheckpointStore store)
    {
        try
        {
            return store.Latest();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static void WriteStatus(string output, TrainingRunStatus status)
    {
        Directory.CreateDirectory(output);
        string path = Path.Combine(output, TrainingRunStatus.FileName);
        string tmp = path + ".tmp";
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            JsonSerializer.Serialize(stream, status, s_statusJson);
            stream.Flush(flushToDisk: true);
        }

        File.Move(tmp, path, overwrite: true);
    }
}
