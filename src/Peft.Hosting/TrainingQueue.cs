using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Peft.Hosting;

/// <summary>Settings of a <see cref="TrainingQueue"/>, bound from the section <see cref="DefaultSectionName"/>.</summary>
public sealed class TrainingQueueOptions
{
    /// <summary>The configuration section read by default.</summary>
    public const string DefaultSectionName = "PeftTrainingQueue";

    /// <summary>
    /// How many jobs train at the same time (&gt;= 1). Default 1: jobs run one after another, each bit-for-bit
    /// reproducible and resumable. Concurrent jobs share TorchSharp's global generator (dropout) and the device, so
    /// their results depend on how their steps interleave.
    /// </summary>
    public int MaxConcurrency { get; set; } = 1;
}

/// <summary>A job's place in a <see cref="TrainingQueue"/>: a snapshot.</summary>
/// <param name="Name">The name it was submitted under (unique in the queue).</param>
/// <param name="OutputDirectory">Its output directory (full path), with its <c>status.json</c>.</param>
/// <param name="State"><see cref="TrainingRunState.Queued"/>, <see cref="TrainingRunState.Running"/>, or how it ended.</param>
/// <param name="Step">Completed steps.</param>
/// <param name="TotalSteps">Steps of the run.</param>
/// <param name="LastLoss">The last finite loss, or null.</param>
/// <param name="Message">Why it failed or was stopped before it started, otherwise null.</param>
/// <param name="SubmittedAt">When it was submitted.</param>
/// <param name="StartedAt">When it started training, or null.</param>
/// <param name="EndedAt">When it ended, or null.</param>
public sealed record TrainingJobInfo(
    string Name,
    string OutputDirectory,
    TrainingRunState State,
    int Step,
    int TotalSteps,
    double? LastLoss,
    string? Message,
    DateTimeOffset SubmittedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? EndedAt);

/// <summary>A submitted job: its name, its live status and a task that completes when it ends.</summary>
public sealed class TrainingJobHandle
{
    private readonly TrainingQueue _queue;

    internal TrainingJobHandle(TrainingQueue queue, string name, Task<TrainingRunStatus> completion)
    {
        _queue = queue;
        Name = name;
        Completion = completion;
    }

    /// <summary>The job's name.</summary>
    public string Name { get; }

    /// <summary>Completes with the job's final status (completed, failed or stopped); never faults.</summary>
    public Task<TrainingRunStatus> Completion { get; }

    /// <summary>The job's current status.</summary>
    public TrainingJobInfo Info => _queue.Find(Name)!;
}

/// <summary>
/// Runs training jobs submitted to one host: one after another by default, or up to
/// <see cref="TrainingQueueOptions.MaxConcurrency"/> at a time. Each job has its own settings, output directory
/// (checkpoints, adapters, curves, <c>status.json</c>) and status (<see cref="Jobs"/>, <see cref="Find"/>); a failing
/// job does not stop the queue. Register it with <c>AddPeftTrainingQueue</c>, resolve it from the service provider
/// and call <see cref="Submit{TJob}"/>.
/// </summary>
/// <remarks>
/// When the host stops, running jobs finish their step and write a checkpoint (state <c>Stopped</c>); jobs still
/// waiting are marked <c>Stopped</c> without starting. Submitting a job again with the same output directory resumes it.
/// </remarks>
public sealed class TrainingQueue : BackgroundService
{
    private readonly IServiceProvider _services;
    private readonly PeftTrainingMetrics _metrics;
    private readonly ILogger _logger;
    private readonly int _maxConcurrency;
    private readonly Channel<Entry> _pending = Channel.CreateUnbounded<Entry>();
    private readonly Dictionary<string, Entry> _jobs = new(StringComparer.Ordinal);
    private readonly List<Entry> _order = new();
    private readonly object _lock = new();
    private bool _closed;

    /// <summary>Creates the queue (dependency injection does this).</summary>
    public TrainingQueue(IServiceProvider services, IOptions<TrainingQueueOptions> options, PeftTrainingMetrics metrics, ILogger<TrainingQueue> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _services = services;
        _metrics = metrics;
        _logger = logger;
        _maxConcurrency = options.Value.MaxConcurrency;
    }

    /// <summary>Every job submitted to this queue, in submission order.</summary>
    public IReadOnlyList<TrainingJobInfo> Jobs
    {
        get
        {
            lock (_lock)
            {
                return _order.Select(e => e.Snapshot()).ToList();
            }
        }
    }

    /// <summary>The job named <paramref name="name"/>, or null.</summary>
    /// <param name="name">The job's name.</param>
    /// <returns>Its status.</returns>
    public TrainingJobInfo? Find(string name)
    {
        lock (_lock)
        {
            return _jobs.TryGetValue(name, out var entry) ? entry.Snapshot() : null;
        }
    }

    /// <summary>
    /// Queues a job of type <typeparamref name="TJob"/>, created through dependency injection when it starts; its
    /// constructor may take <c>IOptions&lt;PeftTrainingOptions&gt;</c> or <see cref="PeftTrainingOptions"/>, which
    /// are this job's <paramref name="options"/>.
    /// </summary>
    /// <typeparam name="TJob">The job (model and data).</typeparam>
    /// <param name="name">A name unique in this queue (logs, metrics tag <c>peft.job</c>, <see cref="Find"/>).</param>
    /// <param name="options">The job's settings (copied); validated here.</param>
    /// <returns>The job's handle.</returns>
    /// <exception cref="OptionsValidationException">A setting is invalid (the message names it, prefixed with the job's name).</exception>
    /// <exception cref="InvalidOperationException">The name is taken, another waiting or running job uses the same output
    /// directory, or the host is stopping.</exception>
    public TrainingJobHandle Submit<TJob>(string name, PeftTrainingOptions options)
        where TJob : class, ITrainingJob =>
        Submit(name, options, (services, jobOptions) => ActivatorUtilities.CreateInstance<TJob>(new JobServices(services, jobOptions)));

    /// <summary>Queues a job created by <paramref name="createJob"/> when it starts (after the global generator is seeded).</summary>
    /// <param name="name">A name unique in this queue.</param>
    /// <param name="options">The job's settings (copied); validated here.</param>
    /// <param name="createJob">Creates the job from the host's services and the job's settings.</param>
    /// <returns>The job's handle.</returns>
    /// <exception cref="OptionsValidationException">A setting is invalid.</exception>
    /// <exception cref="InvalidOperationException">The name is taken, the output directory is in use, or the host is stopping.</exception>
    public TrainingJobHandle Submit(string name, PeftTrainingOptions options, Func<IServiceProvider, PeftTrainingOptions, ITrainingJob> createJob)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(createJob);
        var copy = options.Clone();
        copy.StopHostWhenDone = false;
        if (_maxConcurrency > 1)
        {
            copy.ConsoleProgress = ConsoleProgressMode.Log; // several updating lines would overwrite each other
        }

        var validation = new PeftTrainingOptionsValidator(name).Validate(null, copy);
        if (validation.Failed)
        {
            throw new OptionsValidationException(name, typeof(PeftTrainingOptions), validation.Failures);
        }

        var entry = new Entry(name, copy, createJob);
        lock (_lock)
        {
            if (_closed)
            {
                throw new InvalidOperationException($"Training job {name}: the queue is stopping; no job can be submitted.");
            }

            if (_jobs.ContainsKey(name))
            {
                throw new InvalidOperationException($"Training job {name}: a job with this name was already submitted.");
            }

            if (_order.FirstOrDefault(e => e.IsActive && string.Equals(e.OutputDirectory, entry.OutputDirectory, StringComparison.Ordinal)) is { } other)
            {
                throw new InvalidOperationException($"Training job {name}: the output directory {entry.OutputDirectory} is used by job {other.Name}, which has not ended.");
            }

            TrainingRun.WriteStatus(entry.OutputDirectory, new TrainingRunStatus(TrainingRunState.Queued, 0, copy.TotalSteps, null, null, null));
            _jobs.Add(name, entry);
            _order.Add(entry);
            _pending.Writer.TryWrite(entry);
            TrainingLog.JobQueued(_logger, name, _order.Count(e => e.State == TrainingRunState.Queued) - 1, entry.OutputDirectory);
        }

        return new TrainingJobHandle(this, name, entry.Completion.Task);
    }

    /// <summary>
    /// Stops a job: a waiting one is marked <c>Stopped</c> and never starts; a running one finishes its step, writes
    /// a checkpoint and ends <c>Stopped</c>.
    /// </summary>
    /// <param name="name">The job's name.</param>
    /// <returns>False when there is no such job or it has already ended.</returns>
    public bool Cancel(string name)
    {
        Entry? entry;
        lock (_lock)
        {
            if (!_jobs.TryGetValue(name, out entry) || !entry.IsActive)
            {
                return false;
            }

            if (entry.State == TrainingRunState.Queued)
            {
                EndWithoutRunning(entry, "cancelled before it started");
                return true;
            }
        }

        entry.Stop.Cancel();
        return true;
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var workers = Enumerable.Range(0, _maxConcurrency).Select(_ => Task.Run(() => Work(stoppingToken), CancellationToken.None)).ToArray();
        await Task.WhenAll(workers).ConfigureAwait(false);
        lock (_lock)
        {
            _closed = true;
            _pending.Writer.TryComplete();
            foreach (var entry in _order.Where(e => e.State == TrainingRunState.Queued))
            {
                EndWithoutRunning(entry, "the host stopped before the job started");
            }
        }
    }

    private async Task Work(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            Entry entry;
            try
            {
                entry = await _pending.Reader.ReadAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            lock (_lock)
            {
                if (entry.State != TrainingRunState.Queued)
                {
                    continue; // cancelled while waiting
                }

                entry.State = TrainingRunState.Running;
                entry.StartedAt = DateTimeOffset.UtcNow;
            }

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, entry.Stop.Token);
            TrainingRunStatus status;
            using (_logger.BeginScope(new Dictionary<string, object> { ["Job"] = entry.Name }))
            {
                var run = new TrainingRun(entry.Options, () => entry.CreateJob(_services, entry.Options.Clone()), _metrics, _logger, entry.Name,
                    new TagList { { "peft.job", entry.Name } });
                entry.Run = run;
                try
                {
                    status = run.Run(stop.Token);
                }
                catch (Exception ex)
                {
                    // TrainingRun reports training failures in its status; this is for anything outside its guard.
                    TrainingLog.Failed(_logger, ex, ex.Message);
                    status = new TrainingRunStatus(TrainingRunState.Failed, run.Step, entry.Options.TotalSteps, run.LastLoss, null, ex.Message);
                }
            }

            lock (_lock)
            {
                entry.End(status);
            }

            TrainingLog.JobEnded(_logger, entry.Name, status.State, status.Step, status.TotalSteps);
        }
    }

    private void EndWithoutRunning(Entry entry, string why)
    {
        var status = new TrainingRunStatus(TrainingRunState.Stopped, 0, entry.Options.TotalSteps, null, null, $"Training job {entry.Name}: {why}.");
        try
        {
            TrainingRun.WriteStatus(entry.OutputDirectory, status);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TrainingLog.Failed(_logger, ex, $"cannot write {Path.Combine(entry.OutputDirectory, TrainingRunStatus.FileName)}: {ex.Message}");
        }

        entry.End(status);
        TrainingLog.JobEnded(_logger, entry.Name, status.State, status.Step, status.TotalSteps);
    }

    /// <summary>One submitted job (mutable fields guarded by the queue's lock).</summary>
    private sealed class Entry(string name, PeftTrainingOptions options, Func<IServiceProvider, PeftTrainingOptions, ITrainingJob> createJob)
    {
        public string Name { get; } = name;

        public PeftTrainingOptions Options { get; } = options;

        public Func<IServiceProvider, PeftTrainingOptions, ITrainingJob> CreateJob { get; } = createJob;

        public string OutputDirectory { get; } = Path.GetFullPath(options.OutputDirectory);

        public CancellationTokenSource Stop { get; } = new();

        public TaskCompletionSource<TrainingRunStatus> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TrainingRunState State { get; set; } = TrainingRunState.Queued;

        public TrainingRun? Run { get; set; }

        public TrainingRunStatus? Final { get; private set; }

        public DateTimeOffset SubmittedAt { get; } = DateTimeOffset.UtcNow;

        public DateTimeOffset? StartedAt { get; set; }

        public DateTimeOffset? EndedAt { get; private set; }

        public bool IsActive => State is TrainingRunState.Queued or TrainingRunState.Running;

        public void End(TrainingRunStatus status)
        {
            Final = status;
            State = status.State;
            EndedAt = DateTimeOffset.UtcNow;
            Completion.TrySetResult(status);
        }

        public TrainingJobInfo Snapshot() => Final is { } f
            ? new TrainingJobInfo(Name, OutputDirectory, f.State, f.Step, f.TotalSteps, f.LastLoss, f.Message, SubmittedAt, StartedAt, EndedAt)
            : new TrainingJobInfo(Name, OutputDirectory, State, Run?.Step ?? 0, Options.TotalSteps, Run?.LastLoss, null, SubmittedAt, StartedAt, EndedAt);
    }

    /// <summary>The host's services, except that a job's settings resolve to its own <see cref="PeftTrainingOptions"/>.</summary>
    private sealed class JobServices(IServiceProvider root, PeftTrainingOptions options) : IServiceProvider, IServiceProviderIsService
    {
        private readonly IOptions<PeftTrainingOptions> _wrapped = Options.Create(options);

        public object? GetService(Type serviceType) =>
            serviceType == typeof(IOptions<PeftTrainingOptions>) ? _wrapped
            : serviceType == typeof(PeftTrainingOptions) ? options
            : serviceType == typeof(IServiceProviderIsService) ? this
            : root.GetService(serviceType);

        public bool IsService(Type serviceType) =>
            serviceType == typeof(IOptions<PeftTrainingOptions>) || serviceType == typeof(PeftTrainingOptions)
            || (root.GetService(typeof(IServiceProviderIsService)) is IServiceProviderIsService inner && inner.IsService(serviceType));
    }
}
