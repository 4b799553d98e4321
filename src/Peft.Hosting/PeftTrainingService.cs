using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

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

    /// <summary>The job waits in a <see cref="TrainingQueue"/> for a free slot.</summary>
    Queued,
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
/// from the latest checkpoint, trains with <see cref="Peft.Training.AdapterTrainer"/>, logs and measures every step, writes a
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

    private TrainingRunStatus Train(CancellationToken stoppingToken) =>
        new TrainingRun(_options, () => ActivatorUtilities.CreateInstance<TJob>(_services), _metrics, _logger, typeof(TJob).Name).Run(stoppingToken);
}
