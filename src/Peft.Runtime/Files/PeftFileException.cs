namespace Peft;

/// <summary>
/// The base of every exception this library throws for a file it reads that is malformed, inconsistent or does not fit
/// the model: a safetensors file (<see cref="Serialization.SafetensorsFormatException"/>), a PEFT adapter directory
/// (<see cref="Serialization.AdapterFormatException"/>, <see cref="Serialization.TensorMismatchException"/>), a Hugging Face
/// model directory (<see cref="Checkpoints.CheckpointFormatException"/>, <see cref="Checkpoints.CheckpointMismatchException"/>)
/// or a training checkpoint (<see cref="Training.Checkpoints.CheckpointException"/>). Catch this type to handle any bad
/// input file; a path that does not exist is reported as <see cref="FileNotFoundException"/> or
/// <see cref="DirectoryNotFoundException"/> where the loader documents it. docs/reliability.md lists which exception each
/// file kind throws.
/// </summary>
/// <remarks>
/// The message always names the file (or directory), the field or tensor where there is one, and what was expected.
/// A load that throws one of these has not changed the model.
/// </remarks>
public abstract class PeftFileException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file or directory concerned, when known.</param>
    /// <param name="field">The field (JSON key, tensor name, header entry) concerned, when there is one.</param>
    /// <param name="problem">What is wrong, without the path.</param>
    /// <param name="message">The full message; it names the file.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    protected PeftFileException(string? filePath, string? field, string problem, string message, Exception? innerException)
        : base(message, innerException)
    {
        FilePath = filePath;
        Field = field;
        Problem = problem;
    }

    /// <summary>
    /// The file or directory concerned. <see langword="null"/> only for exceptions created with a message-only
    /// constructor (kept for compatibility), whose message names the file itself.
    /// </summary>
    public string? FilePath { get; }

    /// <summary>The JSON field, tensor name or header entry concerned, or <see langword="null"/> when the problem is the whole file.</summary>
    public string? Field { get; }

    /// <summary>What is wrong, without the path.</summary>
    public string Problem { get; }
}
