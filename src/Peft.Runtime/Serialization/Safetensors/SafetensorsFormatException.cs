namespace Peft.Serialization;

/// <summary>A safetensors file is malformed: its message names the file and exactly what is wrong.</summary>
public sealed class SafetensorsFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="filePath"/>.</summary>
    /// <param name="filePath">The file that is malformed.</param>
    /// <param name="problem">What is wrong, as a phrase (e.g. "tensor 'w' has an unknown dtype 'F8'").</param>
    /// <param name="innerException">The underlying error (a JSON parse error, for instance), if any.</param>
    public SafetensorsFormatException(string filePath, string problem, Exception? innerException = null)
        : base($"Invalid safetensors file '{filePath}': {problem}", innerException)
    {
        FilePath = filePath;
        Problem = problem;
    }

    /// <summary>The malformed file.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong, without the file name.</summary>
    public string Problem { get; }
}
