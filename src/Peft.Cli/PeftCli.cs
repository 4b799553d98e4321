using System.CommandLine;
using Peft.Serialization;
using Peft.Training.Checkpoints;

namespace Peft.Cli;

/// <summary>
/// The <c>peft</c> command line: builds the command tree and runs it with the given writers, so tests invoke it
/// in-process exactly as the tool's entry point does.
/// </summary>
public static class PeftCli
{
    /// <summary>The prefix of every error line on stderr.</summary>
    public const string ErrorPrefix = "peft: error: ";

    /// <summary>Builds the root command with every subcommand.</summary>
    /// <returns>The root command.</returns>
    public static RootCommand BuildRootCommand()
    {
        var root = new RootCommand("Parameter-efficient fine-tuning for TorchSharp: inspect, merge, train and evaluate PEFT adapters.");
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(ConvertCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EvaluateCommand.Create());
        return root;
    }

    /// <summary>Parses and runs <paramref name="args"/>, writing results to <paramref name="output"/> and errors to <paramref name="error"/>.</summary>
    /// <param name="args">The command-line arguments (without the program name).</param>
    /// <param name="output">Standard output.</param>
    /// <param name="error">Standard error.</param>
    /// <param name="cancellationToken">Stops a running <c>train</c> gracefully (a checkpoint is written).</param>
    /// <returns>The exit code (<see cref="ExitCodes"/>).</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        var parse = BuildRootCommand().Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var problem in parse.Errors)
            {
                await error.WriteLineAsync(ErrorPrefix + problem.Message).ConfigureAwait(false);
            }

            await error.WriteLineAsync("Run 'peft --help' (or 'peft <command> --help') for usage.").ConfigureAwait(false);
            return ExitCodes.UsageError;
        }

        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration
            {
                Output = output,
                Error = error,
                EnableDefaultExceptionHandler = false,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            var (code, message) = Describe(ex);
            await error.WriteLineAsync(ErrorPrefix + message).ConfigureAwait(false);
            return code;
        }
    }

    /// <summary>Maps an exception to an exit code and a one-line message that names the file and the problem.</summary>
    internal static (int Code, string Message) Describe(Exception ex) => ex switch
    {
        CliException cli => (cli.ExitCode, cli.Message),
        Peft.PeftFileException or InvalidDataException or Peft.PeftConfigurationException => (ExitCodes.Failure, ex.Message),
        FileNotFoundException or DirectoryNotFoundException => (ExitCodes.UsageError, ex.Message),
        IOException or UnauthorizedAccessException => (ExitCodes.Failure, ex.Message),
        _ => (ExitCodes.Failure, $"{ex.GetType().Name}: {ex.Message}"),
    };
}
