namespace Peft.Cli;

/// <summary>The exit codes of the <c>peft</c> tool (docs/cli.md): a script can rely on them.</summary>
public static class ExitCodes
{
    /// <summary>The command did what it was asked.</summary>
    public const int Success = 0;

    /// <summary>
    /// The command line was valid but the work failed: a file is corrupt or unsupported (a malformed safetensors file,
    /// an unknown <c>peft_type</c>, a base model that lacks an adapted weight, a shape mismatch), an I/O error, or a
    /// training run that failed.
    /// </summary>
    public const int Failure = 1;

    /// <summary>
    /// Usage or validation error, found before any work: an unknown command or option, a missing required option,
    /// a path that does not exist or is of the wrong kind, or an invalid setting in a configuration file.
    /// </summary>
    public const int UsageError = 2;
}

/// <summary>An error the tool reports as one line on stderr (prefixed <c>peft: error:</c>) with <see cref="ExitCode"/>.</summary>
public sealed class CliException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="exitCode">The process exit code (<see cref="ExitCodes"/>).</param>
    /// <param name="message">The message; it names the file and the problem.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public CliException(int exitCode, string message, Exception? inner = null)
        : base(message, inner) => ExitCode = exitCode;

    /// <summary>The process exit code.</summary>
    public int ExitCode { get; }

    /// <summary>A usage/validation error (exit code 2).</summary>
    /// <param name="message">What is wrong with the command line.</param>
    /// <returns>The exception.</returns>
    public static CliException Usage(string message) => new(ExitCodes.UsageError, message);

    /// <summary>A runtime failure (exit code 1).</summary>
    /// <param name="message">What failed, naming the file.</param>
    /// <param name="inner">The underlying error, if any.</param>
    /// <returns>The exception.</returns>
    public static CliException Failure(string message, Exception? inner = null) => new(ExitCodes.Failure, message, inner);
}
