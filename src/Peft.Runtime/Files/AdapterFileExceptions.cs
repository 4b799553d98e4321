namespace Peft.Serialization;

/// <summary>
/// An adapter directory whose files do not follow PEFT's format: <c>adapter_config.json</c> is not a readable JSON object
/// of the expected fields, names an unsupported method or setting, disagrees with the model's adapter, or an adapter
/// tensor holds NaN or infinity. The message names the file and the field.
/// </summary>
public sealed class AdapterFormatException : PeftFileException
{
    /// <summary>Creates the exception; <paramref name="message"/> names the file.</summary>
    /// <param name="message">What is wrong, starting with the file.</param>
    public AdapterFormatException(string message)
        : base(null, null, message, message, null)
    {
    }

    /// <summary>Creates the exception with its cause; <paramref name="message"/> names the file.</summary>
    /// <param name="message">What is wrong, starting with the file.</param>
    /// <param name="inner">The underlying error.</param>
    public AdapterFormatException(string message, Exception inner)
        : base(null, null, message, message, inner)
    {
    }

    /// <summary>Creates the exception for <paramref name="filePath"/> and the field <paramref name="field"/>.</summary>
    /// <param name="filePath">The file concerned.</param>
    /// <param name="field">The JSON key or tensor concerned, or <see langword="null"/>.</param>
    /// <param name="problem">What is wrong, as a phrase that names the field and the expected value.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public AdapterFormatException(string filePath, string? field, string problem, Exception? inner = null)
        : base(filePath, field, problem, $"Invalid adapter file '{filePath}': {problem}", inner)
    {
    }
}

/// <summary>
/// A weights or adapter file that does not fit the model: lists every problem by tensor name. Thrown before anything is
/// copied, so the model is unchanged.
/// </summary>
public sealed class TensorMismatchException : PeftFileException
{
    /// <summary>Creates the exception; <paramref name="message"/> names the file.</summary>
    /// <param name="message">The message (names the file and lists every problem).</param>
    /// <param name="missing">Keys the model expects that the file lacks.</param>
    /// <param name="unexpected">Keys in the file the model has no place for.</param>
    /// <param name="shapeMismatches">Keys whose shapes differ, with both shapes.</param>
    public TensorMismatchException(string message, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> shapeMismatches)
        : this(null, message, missing, unexpected, shapeMismatches)
    {
    }

    /// <summary>Creates the exception for the file <paramref name="filePath"/>.</summary>
    /// <param name="filePath">The weights or adapter file, when known.</param>
    /// <param name="message">The message (names the file and lists every problem).</param>
    /// <param name="missing">Keys the model expects that the file lacks.</param>
    /// <param name="unexpected">Keys in the file the model has no place for.</param>
    /// <param name="shapeMismatches">Keys whose shapes differ, with both shapes.</param>
    public TensorMismatchException(string? filePath, string message, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> shapeMismatches)
        : base(filePath, null, message, message, null)
    {
        MissingKeys = missing;
        UnexpectedKeys = unexpected;
        ShapeMismatches = shapeMismatches;
    }

    /// <summary>Keys the model expects that the file lacks.</summary>
    public IReadOnlyList<string> MissingKeys { get; }

    /// <summary>Keys in the file the model has no place for.</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; }

    /// <summary>Keys whose shapes differ.</summary>
    public IReadOnlyList<string> ShapeMismatches { get; }
}
