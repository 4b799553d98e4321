namespace Peft.Checkpoints;

/// <summary>
/// A Hugging Face model directory is malformed: a file is missing, unreadable or invalid (config.json, the shard index, a
/// safetensors header, a shard that lacks a tensor the index maps to it), a config.json field has the wrong type or is
/// out of range, the sizes in config.json do not match the tensors in the weight files, or a weight is NaN or infinite.
/// The message names the file and, where there is one, the field or tensor (<see cref="PeftFileException.Field"/>) and
/// the expected value.
/// </summary>
public sealed class CheckpointFormatException : PeftFileException
{
    /// <summary>Creates the exception for <paramref name="filePath"/>.</summary>
    /// <param name="filePath">The file that is missing or invalid.</param>
    /// <param name="problem">What is wrong, as a phrase.</param>
    /// <param name="innerException">The underlying error (a JSON or safetensors parse error, for instance), if any.</param>
    public CheckpointFormatException(string filePath, string problem, Exception? innerException = null)
        : this(filePath, null, problem, innerException)
    {
    }

    /// <summary>Creates the exception for <paramref name="filePath"/> and the field or tensor <paramref name="field"/>.</summary>
    /// <param name="filePath">The file that is missing or invalid.</param>
    /// <param name="field">The config.json key or tensor name concerned, or <see langword="null"/>.</param>
    /// <param name="problem">What is wrong, as a phrase that names the field and the expected value.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public CheckpointFormatException(string filePath, string? field, string problem, Exception? innerException = null)
        : base(filePath, field, problem, $"Invalid checkpoint file '{filePath}': {problem}", innerException)
    {
    }

    /// <summary>The file that is missing or invalid.</summary>
    public new string FilePath => base.FilePath!;
}

/// <summary>
/// A checkpoint does not fit a model: tensors are missing, unexpected, mis-shaped or mapped twice. Thrown by a strict
/// <see cref="HfCheckpoint.LoadInto"/> before anything is copied, so the model is unchanged; <see cref="Report"/>
/// lists every problem by name and <see cref="PeftFileException.FilePath"/> is the checkpoint directory.
/// </summary>
public sealed class CheckpointMismatchException : PeftFileException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The message (lists every problem).</param>
    /// <param name="report">What loading would have done.</param>
    public CheckpointMismatchException(string message, CheckpointLoadReport report)
        : this(null, message, report)
    {
    }

    /// <summary>Creates the exception for the checkpoint directory <paramref name="directory"/>.</summary>
    /// <param name="directory">The checkpoint directory, named in the message.</param>
    /// <param name="problem">The problems, one per line.</param>
    /// <param name="report">What loading would have done.</param>
    public CheckpointMismatchException(string? directory, string problem, CheckpointLoadReport report)
        : base(directory, null, problem, directory is null ? problem : $"Checkpoint '{directory}': {problem}", null)
    {
        Report = report;
    }

    /// <summary>Every problem by name (nothing in <see cref="CheckpointLoadReport.Loaded"/> was actually copied).</summary>
    public CheckpointLoadReport Report { get; }
}
