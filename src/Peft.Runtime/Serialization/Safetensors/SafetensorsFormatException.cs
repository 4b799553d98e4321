namespace Peft.Serialization;

/// <summary>
/// A safetensors file is malformed (or, for base weights, holds values that cannot be loaded): its message names the
/// file and exactly what is wrong; <see cref="PeftFileException.Field"/> names the tensor or header entry where there is one.
/// </summary>
public sealed class SafetensorsFormatException : PeftFileException
{
    /// <summary>Creates the exception for <paramref name="filePath"/>.</summary>
    /// <param name="filePath">The file that is malformed.</param>
    /// <param name="problem">What is wrong, as a phrase (e.g. "tensor 'w' has an unknown dtype 'F8'").</param>
    /// <param name="innerException">The underlying error (a JSON parse error, for instance), if any.</param>
    public SafetensorsFormatException(string filePath, string problem, Exception? innerException = null)
        : this(filePath, null, problem, innerException)
    {
    }

    /// <summary>Creates the exception for <paramref name="filePath"/> and the tensor or header entry <paramref name="field"/>.</summary>
    /// <param name="filePath">The file that is malformed.</param>
    /// <param name="field">The tensor or header entry concerned, or <see langword="null"/>.</param>
    /// <param name="problem">What is wrong, as a phrase that names the field.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public SafetensorsFormatException(string filePath, string? field, string problem, Exception? innerException = null)
        : base(filePath, field, problem, $"Invalid safetensors file '{filePath}': {problem}", innerException)
    {
    }

    /// <summary>The malformed file.</summary>
    public new string FilePath => base.FilePath!;
}
