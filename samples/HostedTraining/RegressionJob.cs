using System.Globalization;
using Microsoft.Extensions.Options;
using Peft.Hosting;
using TorchSharp;
using static TorchSharp.torch;

namespace HostedTraining;

/// <summary>Sample-specific settings (section <c>Sample</c>).</summary>
public sealed class SampleOptions
{
    /// <summary>Rows per batch.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>A pause added to every step, to watch (or interrupt) a run of this tiny model. 0 in real use.</summary>
    public int StepDelayMilliseconds { get; set; }
}

/// <summary>
/// Trains <see cref="RegressionModel"/> on a CSV file (header line, then 8 feature columns and the target): every
/// batch is <see cref="SampleOptions.BatchSize"/> rows drawn at random with <see cref="DataSampler"/>.
/// </summary>
public sealed class RegressionJob : ITrainingJob
{
    private readonly Tensor _features;
    private readonly Tensor _targets;
    private readonly SampleOptions _sample;

    /// <summary>Loads the data and builds the model.</summary>
    public RegressionJob(IOptions<PeftTrainingOptions> training, IOptions<SampleOptions> sample)
    {
        string path = training.Value.DataFile
            ?? throw new InvalidOperationException("PeftTraining:DataFile is required by this sample (a CSV with 8 feature columns and a target).");
        _sample = sample.Value;
        (_features, _targets) = ReadCsv(Path.GetFullPath(path));
        Model = new RegressionModel();
        DataSampler = new Generator(unchecked((ulong)training.Value.Seed) + 1);
    }

    /// <inheritdoc />
    public nn.Module Model { get; }

    /// <inheritdoc />
    public Generator? DataSampler { get; }

    /// <inheritdoc />
    public long TokensPerStep => _sample.BatchSize;

    /// <inheritdoc />
    public Tensor ComputeLoss(long batchIndex, Device device)
    {
        if (_sample.StepDelayMilliseconds > 0)
        {
            Thread.Sleep(_sample.StepDelayMilliseconds);
        }

        var rows = randint(0, _features.shape[0], new long[] { _sample.BatchSize }, generator: DataSampler);
        var x = _features.index_select(0, rows).to(device);
        var y = _targets.index_select(0, rows).to(device);
        return nn.functional.mse_loss(((RegressionModel)Model).call(x), y);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Model.Dispose();
        DataSampler?.Dispose();
        _features.Dispose();
        _targets.Dispose();
    }

    private static (Tensor Features, Tensor Targets) ReadCsv(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Training data file not found: {path} (setting PeftTraining:DataFile).", path);
        }

        var features = new List<float>();
        var targets = new List<float>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path).Skip(1))
        {
            lineNumber++;
            string[] cells = line.Split(',');
            if (cells.Length != RegressionModel.Features + 1)
            {
                throw new InvalidDataException($"{path}, line {lineNumber + 1}: expected {RegressionModel.Features + 1} comma-separated numbers, found {cells.Length}.");
            }

            for (int i = 0; i < cells.Length; i++)
            {
                if (!float.TryParse(cells[i], NumberStyles.Float, CultureInfo.InvariantCulture, out float value))
                {
                    throw new InvalidDataException($"{path}, line {lineNumber + 1}, column {i + 1}: '{cells[i]}' is not a number.");
                }

                (i < RegressionModel.Features ? features : targets).Add(value);
            }
        }

        if (targets.Count == 0)
        {
            throw new InvalidDataException($"{path} holds no data rows.");
        }

        return (tensor(features.ToArray(), new long[] { targets.Count, RegressionModel.Features }), tensor(targets.ToArray(), new long[] { targets.Count, 1 }));
    }
}
