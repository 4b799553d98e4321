using System.Globalization;
using Microsoft.Extensions.Options;
using Peft.Hosting;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli;

/// <summary>What the built-in job learns from the last CSV column.</summary>
public enum CsvTask
{
    /// <summary>A number: mean squared error.</summary>
    Regression,

    /// <summary>A class index 0..<see cref="CsvJobOptions.Classes"/>-1: cross-entropy, accuracy.</summary>
    Classification,
}

/// <summary>Settings of the built-in job (configuration section <see cref="SectionName"/>).</summary>
public sealed class CsvJobOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Job";

    /// <summary>Regression (default) or Classification.</summary>
    public CsvTask Task { get; set; } = CsvTask.Regression;

    /// <summary>Number of classes (&gt;= 2) for <see cref="CsvTask.Classification"/>.</summary>
    public int Classes { get; set; }

    /// <summary>Width of the two hidden layers (&gt;= 4, the LoRA rank). Default 32.</summary>
    public int HiddenSize { get; set; } = 32;

    /// <summary>Rows per training batch, drawn at random (&gt;= 1). Default 32.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>
    /// The base model's weights (safetensors). When not set, the base is built from <c>PeftTraining:Seed</c> on the
    /// first run and saved to <c>{OutputDirectory}/base.safetensors</c>, which later runs (resume, evaluate) load.
    /// </summary>
    public string? BaseWeights { get; set; }

    /// <summary>The base weights file this run uses.</summary>
    /// <param name="outputDirectory">The run's output directory.</param>
    /// <returns>A full path.</returns>
    public string BaseWeightsPath(string outputDirectory) => Path.GetFullPath(BaseWeights ?? Path.Combine(outputDirectory, "base.safetensors"));
}

/// <summary>Validates <see cref="CsvJobOptions"/>; messages name the setting.</summary>
internal sealed class CsvJobOptionsValidator : IValidateOptions<CsvJobOptions>
{
    public ValidateOptionsResult Validate(string? name, CsvJobOptions options)
    {
        var failures = new List<string>();
        string s = CsvJobOptions.SectionName;
        if (options.HiddenSize < 4) failures.Add($"{s}:HiddenSize must be >= 4 (the LoRA rank); got {options.HiddenSize}.");
        if (options.BatchSize < 1) failures.Add($"{s}:BatchSize must be >= 1; got {options.BatchSize}.");
        if (options.Task == CsvTask.Classification && options.Classes < 2) failures.Add($"{s}:Classes must be >= 2 for Task Classification; got {options.Classes}.");
        if (options.BaseWeights is { } path && !File.Exists(path)) failures.Add($"{s}:BaseWeights: the file {Path.GetFullPath(path)} does not exist.");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

/// <summary>
/// The built-in model: two LoRA-adapted hidden layers (rank 4, alpha 8) and a frozen head, so the adapter alone holds
/// everything training changes (merging it into the base weights gives the trained model).
/// </summary>
public sealed partial class CsvModel : Module<Tensor, Tensor>
{
    [LoRA(rank: 4, alpha: 8)] private Module<Tensor, Tensor> fc1;
    [LoRA(rank: 4, alpha: 8)] private Module<Tensor, Tensor> fc2;
    private Module<Tensor, Tensor> head;

    /// <summary>Builds the model; the base weights come from the global generator.</summary>
    /// <param name="features">Input columns.</param>
    /// <param name="hidden">Hidden width.</param>
    /// <param name="outputs">1 for regression, the class count for classification.</param>
    public CsvModel(int features, int hidden, int outputs) : base(nameof(CsvModel))
    {
        fc1 = Linear(features, hidden);
        fc2 = Linear(hidden, hidden);
        head = Linear(hidden, outputs);
        InitializePeft();
    }

    /// <summary>Features [batch, features] to outputs [batch, outputs].</summary>
    /// <param name="x">The features.</param>
    /// <returns>Predictions (regression) or logits (classification).</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(functional.relu(fc2.call(functional.relu(fc1.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>A CSV data file: a header line, then numeric feature columns and the target in the last column.</summary>
/// <param name="Features">[rows, columns - 1], float32.</param>
/// <param name="Targets">[rows, 1] float32 (regression) or [rows] int64 (classification).</param>
public sealed record CsvData(Tensor Features, Tensor Targets) : IDisposable
{
    /// <summary>Reads <paramref name="path"/>; errors name the file, line and column.</summary>
    /// <param name="path">The CSV file.</param>
    /// <param name="options">The task (and class count) decides how the target is read.</param>
    /// <returns>The data.</returns>
    public static CsvData Read(string path, CsvJobOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: the data file does not exist.", path);
        var features = new List<float>();
        var targets = new List<float>();
        int columns = -1, line = 1;
        foreach (string text in File.ReadLines(path).Skip(1))
        {
            line++;
            if (text.Length == 0) continue;
            string[] cells = text.Split(',');
            if (columns < 0) columns = cells.Length;
            if (cells.Length != columns || columns < 2)
                throw new InvalidDataException($"{path}, line {line}: expected {Math.Max(columns, 2)} comma-separated numbers, found {cells.Length}.");
            for (int i = 0; i < cells.Length; i++)
            {
                if (!float.TryParse(cells[i], NumberStyles.Float, CultureInfo.InvariantCulture, out float value) || !float.IsFinite(value))
                    throw new InvalidDataException($"{path}, line {line}, column {i + 1}: '{cells[i]}' is not a finite number.");
                if (i < cells.Length - 1)
                {
                    features.Add(value);
                }
                else if (options.Task == CsvTask.Classification && (value != MathF.Floor(value) || value < 0 || value >= options.Classes))
                {
                    throw new InvalidDataException($"{path}, line {line}: the class '{cells[i]}' is not an integer in [0, {options.Classes - 1}] (Job:Classes is {options.Classes}).");
                }
                else
                {
                    targets.Add(value);
                }
            }
        }

        if (targets.Count == 0) throw new InvalidDataException($"{path} holds no data rows.");
        var x = tensor(features.ToArray(), new long[] { targets.Count, columns - 1 });
        var y = options.Task == CsvTask.Classification
            ? tensor(targets.Select(t => (long)t).ToArray())
            : tensor(targets.ToArray(), new long[] { targets.Count, 1 });
        x.DetachFromDisposeScope();
        y.DetachFromDisposeScope();
        return new CsvData(x, y);
    }

    /// <summary>Input columns.</summary>
    public int FeatureCount => (int)Features.shape[1];

    /// <summary>Rows.</summary>
    public long Rows => Features.shape[0];

    /// <summary>The loss of <paramref name="output"/> against <paramref name="targets"/> (mean).</summary>
    internal static Tensor Loss(CsvTask task, Tensor output, Tensor targets) => task == CsvTask.Classification
        ? functional.cross_entropy(output, targets)
        : functional.mse_loss(output, targets);

    /// <summary>Builds the model for this data, then loads or creates its base weights.</summary>
    internal static CsvModel BuildModel(int features, CsvJobOptions options) =>
        new(features, options.HiddenSize, options.Task == CsvTask.Classification ? options.Classes : 1);

    /// <inheritdoc />
    public void Dispose()
    {
        Features.Dispose();
        Targets.Dispose();
    }
}

/// <summary>
/// The job <c>peft train</c> runs: <see cref="CsvModel"/> on <c>PeftTraining:DataFile</c>, batches of
/// <see cref="CsvJobOptions.BatchSize"/> rows drawn at random with <see cref="DataSampler"/>.
/// </summary>
public sealed class CsvJob : ITrainingJob
{
    private readonly CsvData _data;
    private readonly CsvJobOptions _options;

    /// <summary>Reads the data, builds the model and loads (or, on a first run, saves) its base weights.</summary>
    public CsvJob(IOptions<PeftTrainingOptions> training, IOptions<CsvJobOptions> job)
    {
        ArgumentNullException.ThrowIfNull(training);
        ArgumentNullException.ThrowIfNull(job);
        _options = job.Value;
        string data = training.Value.DataFile ?? throw new InvalidOperationException("PeftTraining:DataFile is required by peft train (a CSV file).");
        _data = CsvData.Read(Path.GetFullPath(data), _options);
        var model = CsvData.BuildModel(_data.FeatureCount, _options);
        string basePath = _options.BaseWeightsPath(training.Value.OutputDirectory);
        if (File.Exists(basePath))
        {
            ModelWeights.Load(model, basePath);
        }
        else
        {
            ModelWeights.Save(model, basePath);
        }

        Model = model;
        DataSampler = new Generator(unchecked((ulong)training.Value.Seed) + 1);
    }

    /// <inheritdoc />
    public nn.Module Model { get; }

    /// <inheritdoc />
    public Generator? DataSampler { get; }

    /// <inheritdoc />
    public long TokensPerStep => _options.BatchSize;

    /// <inheritdoc />
    public Tensor ComputeLoss(long batchIndex, Device device)
    {
        var rows = randint(0, _data.Rows, new long[] { _options.BatchSize }, generator: DataSampler);
        var x = _data.Features.index_select(0, rows).to(device);
        var y = _data.Targets.index_select(0, rows).to(device);
        return CsvData.Loss(_options.Task, ((CsvModel)Model).call(x), y);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Model.Dispose();
        DataSampler?.Dispose();
        _data.Dispose();
    }
}
