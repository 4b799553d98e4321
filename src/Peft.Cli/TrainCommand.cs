using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Peft.Hosting;

namespace Peft.Cli;

/// <summary><c>peft train --config appsettings.json [--Section:Key=value ...]</c>: the hosted training service in the foreground.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var configOption = new Option<string>("--config", "-c") { Description = "The settings file (sections PeftTraining, Job, Logging; see docs/cli.md).", Required = true };
        var command = new Command("train", "Train the built-in job (LoRA on a small network over a CSV file) with the hosted training service: checkpoints, resume, Ctrl+C/SIGTERM stop with a checkpoint. Extra --Section:Key=value arguments override settings.")
        {
            configOption,
        };
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction(async (parse, cancellationToken) =>
        {
            string configPath = JobConfiguration.CheckConfigFile(parse.GetRequiredValue(configOption));
            var result = await RunAsync(configPath, parse.UnmatchedTokens, cancellationToken).ConfigureAwait(false);
            var writer = parse.InvocationConfiguration.Output;
            string loss = result.Status.LastLoss is double l ? l.ToString("G6", CultureInfo.InvariantCulture) : "n/a";
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{result.Status.State.ToString().ToLowerInvariant()}: step {result.Status.Step}/{result.Status.TotalSteps}, loss {loss}"));
            if (result.Status.Checkpoint is { } checkpoint) writer.WriteLine($"checkpoint: {checkpoint}");
            if (result.Status.State == TrainingRunState.Completed) writer.WriteLine($"adapter: {Path.Combine(result.OutputDirectory, "adapters", AdapterNames.Default)}");
            writer.WriteLine($"base weights: {result.BaseWeights}");
            if (result.Status.State == TrainingRunState.Failed)
            {
                throw CliException.Failure($"training failed: {result.Status.Message} (status: {Path.Combine(result.OutputDirectory, TrainingRunStatus.FileName)})");
            }

            return ExitCodes.Success;
        });
        return command;
    }

    internal sealed record TrainResult(TrainingRunStatus Status, string OutputDirectory, string BaseWeights);

    private static async Task<TrainResult> RunAsync(string configPath, IReadOnlyList<string> overrides, CancellationToken cancellationToken)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            DisableDefaults = true,
            ApplicationName = "peft",
            ContentRootPath = Path.GetDirectoryName(configPath),
        });
        JobConfiguration.AddSources(builder.Configuration, configPath, overrides);
        builder.Logging.AddConfiguration(builder.Configuration.GetSection("Logging"));
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        builder.AddPeftTraining<CsvJob>();
        JobConfiguration.AddOptions(builder.Services, builder.Configuration, configPath);

        using var host = builder.Build();
        int exitCode = Environment.ExitCode;
        try
        {
            try
            {
                await host.StartAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OptionsValidationException or InvalidOperationException)
            {
                throw JobConfiguration.InvalidConfiguration(configPath, ex);
            }

            await host.WaitForShutdownAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // The service sets the process exit code on failure; the tool returns its own code instead.
            Environment.ExitCode = exitCode;
        }

        var service = host.Services.GetServices<IHostedService>().OfType<PeftTrainingService<CsvJob>>().Single();
        var training = host.Services.GetRequiredService<IOptions<PeftTrainingOptions>>().Value;
        var job = host.Services.GetRequiredService<IOptions<CsvJobOptions>>().Value;
        var status = service.Result ?? new TrainingRunStatus(TrainingRunState.Stopped, 0, training.TotalSteps, null, null, null);
        return new TrainResult(status, training.OutputDirectory, job.BaseWeightsPath(training.OutputDirectory));
    }
}
