using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Peft.Hosting.Tests;

/// <summary>Several jobs on one host through <see cref="TrainingQueue"/>.</summary>
public sealed class QueueTests : IDisposable
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);
    private readonly string _root = Path.Combine(Path.GetTempPath(), "peft-queue-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        Environment.ExitCode = 0;
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private IHost BuildHost(int? maxConcurrency = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        if (maxConcurrency is { } n)
        {
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["PeftTrainingQueue:MaxConcurrency"] = n.ToString() });
        }

        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(new TestJobSettings());
        builder.AddPeftTrainingQueue();
        return builder.Build();
    }

    private PeftTrainingOptions Job(string name, int steps = 12) => new()
    {
        OutputDirectory = Path.Combine(_root, name), TotalSteps = steps, LearningRate = 0.01, CheckpointEvery = 5, Seed = 5,
        ConsoleProgress = ConsoleProgressMode.Log,
    };

    private static Func<IServiceProvider, PeftTrainingOptions, ITrainingJob> With(Action<TestJobSettings> configure)
    {
        var settings = new TestJobSettings();
        configure(settings);
        return (_, _) => new TestJob(settings);
    }

    [Fact]
    public async Task Jobs_run_one_after_another_each_with_its_own_output_and_status_and_a_failure_does_not_stop_the_queue()
    {
        using var host = BuildHost();
        var queue = host.Services.GetRequiredService<TrainingQueue>();
        var failing = queue.Submit("failing", Job("failing"), With(s => s.PoisonedBatches.Add(2)));
        var good = queue.Submit<TestJob>("good", Job("good"));

        // Before the host starts both wait, visible through the API and status.json.
        Assert.Equal(new[] { ("failing", TrainingRunState.Queued), ("good", TrainingRunState.Queued) }, queue.Jobs.Select(j => (j.Name, j.State)));
        Assert.Equal(TrainingRunState.Queued, TrainingRunStatus.Read(Path.Combine(_root, "good")).State);

        await host.StartAsync();
        var failed = await failing.Completion.WaitAsync(s_timeout);
        var completed = await good.Completion.WaitAsync(s_timeout);

        Assert.Equal(TrainingRunState.Failed, failed.State);
        Assert.Contains("Training step 3 of 12: the loss is NaN", failed.Message, StringComparison.Ordinal);
        Assert.Equal(failed, TrainingRunStatus.Read(Path.Combine(_root, "failing")));
        Assert.Equal(TrainingRunState.Completed, completed.State);
        Assert.Equal(12, completed.Step);
        Assert.Equal(completed, TrainingRunStatus.Read(Path.Combine(_root, "good")));
        Assert.True(File.Exists(Path.Combine(_root, "good", "adapters", "default", "adapter_model.safetensors")));
        Assert.True(File.Exists(Path.Combine(_root, "good", "loss.svg")));
        Assert.False(Directory.Exists(Path.Combine(_root, "failing", "adapters")));

        var infos = queue.Jobs;
        Assert.Equal(new[] { TrainingRunState.Failed, TrainingRunState.Completed }, infos.Select(j => j.State));
        Assert.True(infos[1].StartedAt >= infos[0].EndedAt, "the second job started before the first ended");
        Assert.Equal(12, good.Info.Step);
        Assert.Equal(completed.LastLoss, good.Info.LastLoss);

        // The queue (and the host) keep running: a job submitted now runs too.
        Assert.False(host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.IsCancellationRequested);
        var late = queue.Submit<TestJob>("late", Job("late", steps: 3));
        Assert.Equal(TrainingRunState.Completed, (await late.Completion.WaitAsync(s_timeout)).State);
        await host.StopAsync();
        Assert.Equal(0, Environment.ExitCode);
    }

    [Fact]
    public async Task A_job_run_alone_in_the_queue_trains_exactly_like_the_single_job_service()
    {
        using var host = BuildHost();
        var queue = host.Services.GetRequiredService<TrainingQueue>();
        var first = queue.Submit<TestJob>("first", Job("first"));
        var second = queue.Submit<TestJob>("second", Job("second"));
        await host.StartAsync();
        var a = await first.Completion.WaitAsync(s_timeout);
        var b = await second.Completion.WaitAsync(s_timeout);
        await host.StopAsync();

        // Same settings and seed, one after the other: the same losses bit for bit (each run seeds the global generator).
        Assert.Equal(BitConverter.DoubleToInt64Bits(a.LastLoss!.Value), BitConverter.DoubleToInt64Bits(b.LastLoss!.Value));
        Assert.Equal(File.ReadAllLines(Path.Combine(_root, "first", "loss.csv")), File.ReadAllLines(Path.Combine(_root, "second", "loss.csv")));
    }

    [Fact]
    public async Task Cancel_stops_a_running_job_with_a_checkpoint_and_a_waiting_one_before_it_starts()
    {
        using var host = BuildHost();
        var queue = host.Services.GetRequiredService<TrainingQueue>();
        var running = queue.Submit("running", Job("running", steps: 50), With(s => s.OnBatch = b => { if (b == 6) queue.Cancel("running"); }));
        var waiting = queue.Submit<TestJob>("waiting", Job("waiting"));
        Assert.True(queue.Cancel("waiting"));
        Assert.False(queue.Cancel("no-such-job"));

        await host.StartAsync();
        var stopped = await running.Completion.WaitAsync(s_timeout);
        var never = await waiting.Completion.WaitAsync(s_timeout);
        await host.StopAsync();

        Assert.Equal(TrainingRunState.Stopped, stopped.State);
        Assert.Equal(7, stopped.Step); // the step in progress finished
        Assert.EndsWith("step-00000007", stopped.Checkpoint, StringComparison.Ordinal);
        Assert.Equal(TrainingRunState.Stopped, never.State);
        Assert.Contains("cancelled before it started", never.Message, StringComparison.Ordinal);
        Assert.Null(waiting.Info.StartedAt);
        Assert.Equal(never, TrainingRunStatus.Read(Path.Combine(_root, "waiting")));
        Assert.False(queue.Cancel("running"));
    }

    [Fact]
    public async Task Stopping_the_host_checkpoints_the_running_job_and_marks_waiting_ones_stopped()
    {
        using var host = BuildHost();
        var queue = host.Services.GetRequiredService<TrainingQueue>();
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        var running = queue.Submit("running", Job("running", steps: 50), With(s => s.OnBatch = b =>
        {
            if (b == 3) lifetime.StopApplication();
            if (b >= 3) Thread.Sleep(20); // the host cancels the queue asynchronously: leave it time to do so mid-run
        }));
        var waiting = queue.Submit<TestJob>("waiting", Job("waiting"));
        await host.StartAsync();
        await host.WaitForShutdownAsync().WaitAsync(s_timeout);

        var stopped = await running.Completion.WaitAsync(s_timeout);
        Assert.Equal(TrainingRunState.Stopped, stopped.State);
        Assert.InRange(stopped.Step, 4, 49);
        Assert.EndsWith($"step-{stopped.Step:D8}", stopped.Checkpoint, StringComparison.Ordinal);
        var never = await waiting.Completion.WaitAsync(s_timeout);
        Assert.Equal(TrainingRunState.Stopped, never.State);
        Assert.Contains("the host stopped before the job started", never.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => queue.Submit<TestJob>("after", Job("after")));
    }

    [Fact]
    public async Task With_MaxConcurrency_2_two_jobs_train_at_the_same_time()
    {
        using var host = BuildHost(maxConcurrency: 2);
        var queue = host.Services.GetRequiredService<TrainingQueue>();
        using var bothRunning = new CountdownEvent(2);
        bool overlapped = true;
        void Meet(long batch)
        {
            if (batch == 2)
            {
                bothRunning.Signal();
                overlapped &= bothRunning.Wait(TimeSpan.FromSeconds(20)); // with one slot the other job never arrives
            }
        }

        var x = queue.Submit("x", Job("x"), With(s => s.OnBatch = Meet));
        var y = queue.Submit("y", Job("y"), With(s => s.OnBatch = Meet));
        await host.StartAsync();
        var results = await Task.WhenAll(x.Completion, y.Completion).WaitAsync(s_timeout);
        await host.StopAsync();

        Assert.True(overlapped);
        Assert.All(results, r => Assert.Equal(TrainingRunState.Completed, r.State));
    }

    [Fact]
    public async Task A_job_created_through_dependency_injection_sees_its_own_settings()
    {
        using var host = BuildHost();
        var queue = host.Services.GetRequiredService<TrainingQueue>();
        var job = queue.Submit<OptionsReadingJob>("own", Job("own", steps: 2));
        await host.StartAsync();
        Assert.Equal(TrainingRunState.Completed, (await job.Completion.WaitAsync(s_timeout)).State);
        await host.StopAsync();
        Assert.Equal(Path.Combine(_root, "own"), OptionsReadingJob.OutputDirectorySeen);
    }

    [Fact]
    public void Submit_validates_settings_names_and_output_directories()
    {
        using var host = BuildHost();
        var queue = host.Services.GetRequiredService<TrainingQueue>();
        var bad = Job("bad");
        bad.LearningRate = -1;
        var ex = Assert.Throws<OptionsValidationException>(() => queue.Submit<TestJob>("bad", bad));
        Assert.Contains("bad:LearningRate must be a finite number > 0", ex.Message, StringComparison.Ordinal);
        Assert.Empty(queue.Jobs);

        queue.Submit<TestJob>("a", Job("a"));
        Assert.Contains("already submitted", Assert.Throws<InvalidOperationException>(() => queue.Submit<TestJob>("a", Job("other"))).Message, StringComparison.Ordinal);
        Assert.Contains("is used by job a", Assert.Throws<InvalidOperationException>(() => queue.Submit<TestJob>("b", Job("a"))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_queue_setting_stops_the_host_at_start()
    {
        using var host = BuildHost(maxConcurrency: 0);
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("PeftTrainingQueue:MaxConcurrency must be >= 1", ex.Message, StringComparison.Ordinal);
    }
}

/// <summary>A job that reads its settings through <c>IOptions&lt;PeftTrainingOptions&gt;</c>, as the sample's job does.</summary>
public sealed class OptionsReadingJob : ITrainingJob
{
    private readonly TestJob _inner;

    public OptionsReadingJob(IOptions<PeftTrainingOptions> options, TestJobSettings settings)
    {
        OutputDirectorySeen = options.Value.OutputDirectory;
        _inner = new TestJob(settings);
    }

    public static string? OutputDirectorySeen { get; private set; }

    public TorchSharp.torch.nn.Module Model => _inner.Model;

    public TorchSharp.torch.Generator? DataSampler => _inner.DataSampler;

    public long TokensPerStep => _inner.TokensPerStep;

    public TorchSharp.torch.Tensor ComputeLoss(long batchIndex, TorchSharp.torch.Device device) => _inner.ComputeLoss(batchIndex, device);

    public void Dispose() => _inner.Dispose();
}
