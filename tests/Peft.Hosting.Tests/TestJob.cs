using Peft.Hosting;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Hosting.Tests;

/// <summary>Knobs of <see cref="TestJob"/>, registered as a singleton by each test.</summary>
public sealed class TestJobSettings
{
    /// <summary>Batches whose loss is made NaN.</summary>
    public HashSet<long> PoisonedBatches { get; } = new();

    /// <summary>Called with each batch index before its loss is computed (to stop or cancel mid-run).</summary>
    public Action<long>? OnBatch { get; set; }

    /// <summary>The job's <see cref="ITrainingJob.Callbacks"/>.</summary>
    public List<Peft.Training.ITrainingCallback> Callbacks { get; } = new();
}

/// <summary>Trains <see cref="TinyNet"/> on batches drawn from a seeded sampler.</summary>
public sealed class TestJob : ITrainingJob
{
    private readonly TestJobSettings _settings;
    private readonly TinyNet _model = new();

    public TestJob(TestJobSettings settings) => _settings = settings;

    public nn.Module Model => _model;

    public Generator? DataSampler { get; } = new Generator(77);

    public long TokensPerStep => 16;

    public IReadOnlyList<Peft.Training.ITrainingCallback> Callbacks => _settings.Callbacks;

    public Tensor ComputeLoss(long batchIndex, Device device)
    {
        _settings.OnBatch?.Invoke(batchIndex);
        var (x, y) = TinyNet.Batch(DataSampler!);
        var loss = nn.functional.mse_loss(_model.call(x.to(device)), y.to(device));
        return _settings.PoisonedBatches.Contains(batchIndex) ? loss * double.NaN : loss;
    }

    public void Dispose()
    {
        _model.Dispose();
        DataSampler?.Dispose();
    }
}
