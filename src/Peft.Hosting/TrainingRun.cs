using Peft.Checkpoints;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Peft.Serialization;
using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;

namespace Peft.Hosting;

/// <summary>
/// One training run into one output directory: seeds, creates the job, resumes from the latest checkpoint, trains,
/// logs, measures, records the curves, checkpoints, exports the adapters and writes <c>status.json</c>. Used by
/// <see cref="PeftTrainingService{TJob}"/> (one run per host) and <see cref="TrainingQueue"/> (several).
/// </summary>
internal sealed class TrainingRun
{
    private static readonly JsonSerializerOptions s_statusJson = new() { WriteIndented = true };

    private readonly PeftTrainingOptions _options;
    private readonly Func<ITrainingJob> _createJob;
    private readonly PeftTrainingMetrics _metrics;
    private readonly ILogger _logger;
    private readonly string _title;
    private readonly TagList _tags;
    private readonly TextWriter? _console;
    private int _step;
    private double _lastLoss = double.NaN;

    /// <summary>Prepares the run (nothing happens until <see cref="Run"/>).</summary>
    /// <param name="options">Validated settings.</param>
    /// <param name="createJob">Creates the job; called after the global generator is seeded.</param>
    /// <param name="metrics">Instruments to record on.</param>
    /// <param name="logger">Where log messages go.</param>
    /// <param name="title">Names the run in the plot's title.</param>
    /// <param name="tags">Tags added to every measurement (e.g. the job's name).</param>
    /// <param name="console">Where the interactive progress line is drawn (null: the process's console).</param>
    public TrainingRun(PeftTrainingOptions options, Func<ITrainingJob> createJob, PeftTrainingMetrics metrics, ILogger logger, string title,
        TagList tags = default, TextWriter? console = null)
    {
        _options = options;
        _createJob = createJob;
        _metrics = metrics;
        _logger = logger;
        _title = title;
        _tags = tags;
        _console = console;
        OutputDirectory = Path.GetFullPath(options.OutputDirectory);
    }

    /// <summary>The run's output directory (full path).</summary>
    public string OutputDirectory { get; }

    /// <summary>Completed steps so far (safe to read from any thread).</summary>
    public int Step => Volatile.Read(ref _step);

    /// <summary>The last finite loss so far, or null.</summary>
    public double? LastLoss
    {
        get
        {
            double loss = Volatile.Read(ref _lastLoss);
            return double.IsNaN(loss) ? null : loss;
        }
    }

    /// <summary>Trains until done, failed or <paramref name="stoppingToken"/> is cancelled (then a checkpoint is written).</summary>
    /// <param name="stoppingToken">Stops the run between steps.</param>
    /// <returns>The final status (also in <c>status.json</c>); never throws for a training failure.</returns>
    public TrainingRunStatus Run(CancellationToken stoppingToken)
    {
        var o = _options;
        string output = OutputDirectory;
        var store = new CheckpointStore(Path.Combine(output, "checkpoints"), o.KeepCheckpoints);
        double? lastLoss = null;
        TrainingCurves? curves = null;
        ConsoleProgress? line = null;
        try
        {
            Directory.CreateDirectory(output);
            var device = string.Equals(o.Device, "auto", StringComparison.OrdinalIgnoreCase) ? PeftDevice.Default : torch.device(o.Device.ToLowerInvariant());
            Seeding.SetSeed(o.Seed);
            using var job = _createJob();
            var model = job.Model;
            model.to(device);
            if (!string.IsNullOrWhiteSpace(o.Adapter))
            {
                var declared = model.AdapterNames();
                if (!declared.Contains(o.Adapter, StringComparer.Ordinal))
                {
                    throw new InvalidOperationException(
                        $"PeftTraining:Adapter is '{o.Adapter}', but {model.GetType().Name} declares the adapters: {string.Join(", ", declared)}.");
                }

                model.SetActiveAdapter(o.Adapter);
            }

            using var trainer = new AdapterTrainer(
                model.TrainableParameters(),
                o.ToTrainingOptions() with { Callbacks = job.Callbacks, Regularizers = job.Regularizers });
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

            SetProgress(trainer.Step, lastLoss);
            curves = new TrainingCurves(output, savedStep >= 0 ? savedStep : null, o.TensorBoard);
            bool useLine = _console is not null ? o.ConsoleProgress != ConsoleProgressMode.Log : ConsoleProgress.UseLine(o.ConsoleProgress);
            line = useLine ? new ConsoleProgress(_console ?? Console.Out, _console is null ? ConsoleProgress.ConsoleWidth() : 100) : null;
            WriteStatus(output, new TrainingRunStatus(TrainingRunState.Running, Step, o.TotalSteps, lastLoss, store.Latest(), null));
            int firstStep = trainer.Step;
            var clock = Stopwatch.StartNew();
            while (trainer.Step < o.TotalSteps)
            {
                if (stoppingToken.IsCancellationRequested)
                {
                    line?.End();
                    string path = savedStep == trainer.Step ? store.Latest()! : Save(store, job, trainer, lastLoss);
                    TrainingLog.Stopped(_logger, trainer.Step, path);
                    return Finish(curves, new TrainingRunStatus(TrainingRunState.Stopped, trainer.Step, o.TotalSteps, lastLoss, path, null));
                }

                long started = Stopwatch.GetTimestamp();
                long batch = trainer.Step;
                var progress = trainer.TrainStep(() => job.ComputeLoss(batch, device));
                Record(progress, Stopwatch.GetElapsedTime(started).TotalSeconds, job.TokensPerStep);
                if (!progress.Skipped)
                {
                    lastLoss = progress.Loss;
                }

                SetProgress(trainer.Step, lastLoss);
                curves.Add(progress);
                double done = progress.Step - firstStep;
                double seconds = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                double tokensPerSecond = done * job.TokensPerStep / seconds;
                var eta = TimeSpan.FromSeconds(Math.Round(seconds / done * (o.TotalSteps - progress.Step)));
                if (progress.Skipped)
                {
                    TrainingLog.Skipped(_logger, progress.Step, progress.TotalSteps, progress.Loss, progress.GradNorm);
                }
                else
                {
                    line?.Update(progress.Step, progress.TotalSteps, progress.Loss, progress.LearningRate, tokensPerSecond, eta);
                    if (progress.Step == o.TotalSteps)
                    {
                        line?.End(); // keep the final line before the last checkpoint's log message
                    }
                    if (progress.Step % o.LogEvery == 0 || progress.Step == o.TotalSteps)
                    {
                        // With the updating line on the console, the periodic progress record goes to Debug (other sinks keep it).
                        TrainingLog.Progress(_logger, line is null ? LogLevel.Information : LogLevel.Debug, progress.Step, progress.TotalSteps,
                            progress.Loss, progress.LearningRate, progress.GradNorm, tokensPerSecond, eta);
                    }
                }

                if (trainer.Step % o.CheckpointEvery == 0 || trainer.Step == o.TotalSteps)
                {
                    string path = Save(store, job, trainer, lastLoss);
                    savedStep = trainer.Step;
                    WriteStatus(output, new TrainingRunStatus(TrainingRunState.Running, trainer.Step, o.TotalSteps, lastLoss, path, null));
                }
            }

            line?.End();
            string adapters = Path.Combine(output, "adapters");
            foreach (string name in model.AdapterNames())
            {
                AdapterFiles.Save(model, Path.Combine(adapters, name), name);
            }

            TrainingLog.Completed(_logger, trainer.Step, lastLoss ?? double.NaN, adapters);
            return Finish(curves, new TrainingRunStatus(TrainingRunState.Completed, trainer.Step, o.TotalSteps, lastLoss, store.Latest(), null));
        }
        catch (Exception ex)
        {
            line?.End();
            TrainingLog.Failed(_logger, ex, ex.Message);
            return Finish(curves, new TrainingRunStatus(TrainingRunState.Failed, Step, o.TotalSteps, lastLoss, SafeLatest(store), ex.Message));
        }
        finally
        {
            curves?.Dispose();
        }
    }

    /// <summary>Writes <c>status.json</c> atomically (temporary file, flush, rename).</summary>
    internal static void WriteStatus(string output, TrainingRunStatus status)
    {
        Directory.CreateDirectory(output);
        string path = Path.Combine(output, TrainingRunStatus.FileName);
        AtomicFile.Write(path, stream => JsonSerializer.Serialize(stream, status, s_statusJson));
    }

    private void SetProgress(int step, double? lastLoss)
    {
        Volatile.Write(ref _lastLoss, lastLoss ?? double.NaN);
        Volatile.Write(ref _step, step);
    }

    private string Save(CheckpointStore store, ITrainingJob job, AdapterTrainer trainer, double? lastLoss)
    {
        long started = Stopwatch.GetTimestamp();
        var info = store.Save(job.Model, trainer, dataPosition: trainer.Step, job.DataSampler, lastLoss);
        var elapsed = Stopwatch.GetElapsedTime(started);
        _metrics.Checkpoints.Add(1, _tags);
        _metrics.CheckpointDuration.Record(elapsed.TotalSeconds, _tags);
        TrainingLog.CheckpointWritten(_logger, info.Path, info.Manifest.Step, elapsed.TotalMilliseconds);
        return info.Path;
    }

    private void Record(TrainingProgress progress, double seconds, long tokens)
    {
        _metrics.Steps.Add(1, _tags);
        _metrics.StepDuration.Record(seconds, _tags);
        _metrics.LearningRate.Record(progress.LearningRate, _tags);
        if (progress.Skipped)
        {
            _metrics.SkippedSteps.Add(1, _tags);
            return;
        }

        _metrics.Tokens.Add(tokens, _tags);
        _metrics.Loss.Record(progress.Loss, _tags);
    }

    private TrainingRunStatus Finish(TrainingCurves? curves, TrainingRunStatus status)
    {
        string output = OutputDirectory;
        if (curves is not null)
        {
            try
            {
                string plot = curves.WritePlot($"{_title}: loss ({status.State.ToString().ToLowerInvariant()} at step {status.Step}/{status.TotalSteps})");
                TrainingLog.PlotWritten(_logger, plot, Path.Combine(output, TrainingCurves.TensorBoardDirectoryName));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                TrainingLog.CurvesFailed(_logger, output, ex.Message);
            }
        }

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
}
