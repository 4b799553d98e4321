namespace Peft.Training.Checkpoints;

/// <summary>
/// A training checkpoint could not be written, read or applied. The message names the checkpoint directory or file
/// (<see cref="CheckpointPath"/>), the manifest field or tensor where there is one (<see cref="PeftFileException.Field"/>),
/// and what is wrong with it. A failed <see cref="CheckpointStore.Load"/> has changed nothing.
/// </summary>
public sealed class CheckpointException : PeftFileException
{
    /// <summary>Creates the exception; the message is prefixed with the path.</summary>
    /// <param name="checkpointPath">The checkpoint directory or file concerned.</param>
    /// <param name="problem">What is wrong, as a sentence.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public CheckpointException(string checkpointPath, string problem, Exception? innerException = null)
        : this(checkpointPath, null, problem, innerException)
    {
    }

    /// <summary>Creates the exception for a field (manifest key, tensor name) of <paramref name="checkpointPath"/>.</summary>
    /// <param name="checkpointPath">The checkpoint directory or file concerned.</param>
    /// <param name="field">The manifest key or tensor concerned, or <see langword="null"/>.</param>
    /// <param name="problem">What is wrong, as a sentence that names the field and the expected value.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public CheckpointException(string checkpointPath, string? field, string problem, Exception? innerException = null)
        : base(checkpointPath, field, problem, $"Checkpoint {checkpointPath}: {problem}", innerException)
    {
    }

    /// <summary>The checkpoint directory or file concerned (the same as <see cref="PeftFileException.FilePath"/>).</summary>
    public string CheckpointPath => FilePath!;
}
