namespace Peft.Training.Checkpoints;

/// <summary>
/// A checkpoint could not be written, read or applied. The message names the checkpoint directory or file
/// (<see cref="CheckpointPath"/>) and what is wrong with it.
/// </summary>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates the exception; the message is prefixed with the path.</summary>
    /// <param name="checkpointPath">The checkpoint directory or file concerned.</param>
    /// <param name="problem">What is wrong, as a sentence.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public CheckpointException(string checkpointPath, string problem, Exception? innerException = null)
        : base($"Checkpoint {checkpointPath}: {problem}", innerException)
    {
        CheckpointPath = checkpointPath;
        Problem = problem;
    }

    /// <summary>The checkpoint directory or file concerned.</summary>
    public string CheckpointPath { get; }

    /// <summary>What is wrong, without the path.</summary>
    public string Problem { get; }
}
