using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Peft.Hosting;
using Peft.Serialization;
using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Cli;

/// <summary>
/// <c>peft evaluate --config appsettings.json [--checkpoint DIR | --adapter DIR | --weights FILE] [--data FILE] [--json]</c>:
/// loss (and accuracy for classification) of the built-in job's model on a data file.
/// </summary>
internal static class EvaluateCommand
{
    public static Command Create()
    {
        var configOption = new Option<string>("--config", "-c") { Description = "The settings file the model was trained with.", Required = true };
        var checkpointOption = new Option<string?>("--checkpoint") { Description = "A training checkpoint directory (step-N): its trained parameters on the base weights." };
        var adapterOption = new Option<string?>("--adapter") { Description = "An adapter directory (PEFT format) on the base weights." };
        var adapterNameOption = new Option<string?>("--adapter-name") { Description = "With --adapter: the named adapter's subdirectory." };
        var weightsOption = new Option<string?>("--weights") { Description = "Full model weights (e.g. from peft merge), evaluated without adapters." };
        var dataOption = new Option<string?>("--data") { Description = "The CSV data file (default: PeftTraining:DataFile)." };
        var jsonOption = new Option<bool>("--json") { Description = "Write one JSON object instead of text." };
        var command = new Command("evaluate", "Loss (and accuracy) of the built-in job's model on a CSV file: the base model, a checkpoint, an adapter or merged weights.")
        {
            configOption, checkpointOption, adapterOption, adapterNameOption, weightsOption, dataOption, jsonOption,
        };
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction(parse =>
        {
            string configPath = JobConfiguration.CheckConfigFile(parse.GetRequiredValue(configOption));
            string? checkpoint = parse.GetValue(checkpointOption), adapter = parse.GetValue(adapterOption), weights = parse.GetValue(weightsOption);
            if (new[] { checkpoint, adapter, weights }.Count(v => v is not null) > 1)
            {
                throw CliException.Usage("give at most one of --checkpoint, --adapter and --weights.");
            }

            if (parse.GetValue(adapterNameOption) is not null && adapter is null)
            {
                throw CliException.Usage("--adapter-name needs --adapter.");
            }

            if (checkpoint is not null && !Directory.Exists(checkpoint)) throw CliException.Usage($"{checkpoint}: the checkpoint directory does not exist.");
            if (weights is not null && !File.Exists(weights)) throw CliException.Usage($"{weights}: the weights file does not exist.");
            if (adapter is not null) adapter = AdapterDirectory.Resolve(adapter, parse.GetValue(adapterNameOption));

            var (training, job) = ReadOptions(configPath, parse.UnmatchedTokens);
            string data = parse.GetValue(dataOption) is { } d ? Path.GetFullPath(d)
                : training.DataFile ?? throw CliException.Usage($"{configPath}: no data file: give --data or set PeftTraining:DataFile.");
            if (!File.Exists(data)) throw CliException.Usage($"{data}: the data file does not exist.");

            var report = Evaluate(training, job, data, checkpoint, adapter, weights);
            var writer = parse.InvocationConfiguration.Output;
            if (parse.GetValue(jsonOption))
            {
                writer.WriteLine(report.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            }
            else
            {
                var inv = CultureInfo.InvariantCulture;
                string accuracy = report["accuracy"] is { } a ? string.Create(inv, $"  accuracy {a.GetValue<double>():P2}") : string.Empty;
                writer.WriteLine(string.Create(inv, $"{report["model"]!.GetValue<string>()}: loss {report["loss"]!.GetValue<double>():G6}{accuracy}  ({report["rows"]!.GetValue<long>()} rows of {data})"));
            }

            return ExitCodes.Success;
        });
        return command;
    }

    private static (PeftTrainingOptions Training, CsvJobOptions Job) ReadOptions(string configPath, IReadOnlyList<string> overrides)
    {
        var builder = new ConfigurationBuilder();
        JobConfiguration.AddSources(builder, configPath, overrides);
        var configuration = builder.Build();
        var services = new ServiceCollection();
        services.AddOptions<PeftTrainingOptions>().Bind(configuration.GetSection(PeftTrainingOptions.DefaultSectionName), b => b.ErrorOnUnknownConfiguration = true);
        JobConfiguration.AddOptions(services, configuration, configPath);
        using var provider = services.BuildServiceProvider();
        try
        {
            var training = provider.GetRequiredService<IOptions<PeftTrainingOptions>>().Value;
            if (string.IsNullOrWhiteSpace(training.OutputDirectory))
            {
                throw CliException.Usage($"{configPath}: PeftTraining:OutputDirectory is required (it holds base.safetensors).");
            }

            return (training, provider.GetRequiredService<IOptions<CsvJobOptions>>().Value);
        }
        catch (Exception ex) when (ex is OptionsValidationException or InvalidOperationException)
        {
            throw JobConfiguration.InvalidConfiguration(configPath, ex);
        }
    }

    private static JsonObject Evaluate(PeftTrainingOptions training, CsvJobOptions job, string dataPath, string? checkpoint, string? adapter, string? weights)
    {
        using var data = CsvData.Read(dataPath, job);
        Seeding.SetSeed(training.Seed);
        using var model = CsvData.BuildModel(data.FeatureCount, job);
        string what;
        if (weights is not null)
        {
            ModelWeights.Load(model, weights);
            what = "weights " + Path.GetFullPath(weights);
        }
        else
        {
            string basePath = job.BaseWeightsPath(training.OutputDirectory);
            if (!File.Exists(basePath))
            {
                throw CliException.Usage($"{basePath}: the base weights file does not exist (peft train writes it on its first run, or set Job:BaseWeights).");
            }

            ModelWeights.Load(model, basePath);
            if (checkpoint is not null)
            {
                LoadCheckpoint(model, checkpoint);
                what = "checkpoint " + Path.GetFullPath(checkpoint);
            }
            else if (adapter is not null)
            {
                AdapterFiles.Load(model, adapter);
                what = "adapter " + Path.GetFullPath(adapter);
            }
            else
            {
                what = "base " + basePath;
            }
        }

        bool adapters = checkpoint is not null || adapter is not null;
        model.eval();
        double lossSum = 0;
        long correct = 0;
        using (no_grad())
        using (adapters ? null : model.DisableAdapters())
        {
            const long chunk = 4096;
            for (long start = 0; start < data.Rows; start += chunk)
            {
                using var scope = NewDisposeScope();
                long length = Math.Min(chunk, data.Rows - start);
                var x = data.Features.narrow(0, start, length);
                var y = data.Targets.narrow(0, start, length);
                var output = model.call(x);
                lossSum += CsvData.Loss(job.Task, output, y).item<float>() * length;
                if (job.Task == CsvTask.Classification) correct += output.argmax(1).eq(y).sum().item<long>();
            }
        }

        var report = new JsonObject
        {
            ["model"] = what,
            ["data"] = dataPath,
            ["rows"] = data.Rows,
            ["task"] = job.Task.ToString(),
            ["loss"] = lossSum / data.Rows,
        };
        if (job.Task == CsvTask.Classification) report["accuracy"] = (double)correct / data.Rows;
        return report;
    }

    /// <summary>Copies a checkpoint's trained parameters (validated through its manifest) into the model by state-dict name.</summary>
    private static void LoadCheckpoint(nn.Module model, string directory)
    {
        var manifest = CheckpointStore.ReadManifest(directory);
        string file = Path.Combine(Path.GetFullPath(directory), CheckpointStore.ParametersFileName);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        using var reader = SafetensorsFile.Open(file);
        using var scope = NewDisposeScope();
        var values = new List<(Tensor Target, Tensor Value)>();
        foreach (string name in manifest.Parameters)
        {
            if (!parameters.TryGetValue(name, out var target))
            {
                throw CliException.Failure($"{file}: the checkpoint's parameter '{name}' is not in the built-in model (was it trained with other Job settings?).");
            }

            var info = reader.GetInfo(name);
            if (!info.Shape.SequenceEqual(target.shape))
            {
                throw CliException.Failure($"{file}: '{name}' is [{string.Join(", ", info.Shape)}] but the model's is [{string.Join(", ", target.shape)}].");
            }

            values.Add((target, reader.ReadTensor(name).to(target.dtype)));
        }

        using var _ = no_grad();
        foreach (var (target, value) in values) target.copy_(value);
    }
}
