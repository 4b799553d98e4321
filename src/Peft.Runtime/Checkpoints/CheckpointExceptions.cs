namespace Peft.Checkpoints;

/// <summary>
/// A checkpoint directory is malformed: a file is missing, unreadable or invalid (config.json, the shard index, a
/// safetensors header, a shard that lacks a tensor the index maps to it). The message names the file and, where there
/// is one, the tensor.
/// </summary>
public sealed class CheckpointFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="filePath"/>.</summary>
    /// <param name="filePath">The file that is missing or invalid.</param>
    /// <param name="problem">What is wrong, as a phrase.</param>
    /// <param name="innerException">The underlying error (a JSON or safetensors parse error, for instance), if any.</param>
    public CheckpointFormatException(string filePath, string problem, Exception? innerException = null)
        : base($"Invalid checkpoint file '{filePath}': {problem}", innerException)
    {
        FilePath = filePath;
        Problem = problem;
    }

    /// <summary>The file that is missing or invalid.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong, without the file name.</summary>
    public string Problem { get; }
}

/// <summary>
/// A checkpoint does not fit a model: tensors are missing, unexpected, mis-shaped or mapped twice. Thrown by a strict
/// <see cref="HfCheckpoint.LoadInto"/> before anything is copied, so the model is unchanged; <see cref="Report"/>
/// lists every problem by name.
/// </summary>
public sealed class CheckpointMismatchException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The message (lists every problem).</param>
    /// <param name="report">What loading would have done.</param>
    public CheckpointMismatchException(string message, CheckpointLoadReport report)
        : base(message)
    {
        Report = report;
    }

    /// <summary>Every problem by name (nothing in <see cref="CheckpointLoadReport.Loaded"/> was actually copied).</summary>
    public CheckpointLoadReport Report { get; }
}
