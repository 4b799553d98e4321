using System.Text.Json;

namespace Peft.Text;

/// <summary>A labelled text for sequence classification, read from a JSONL line such as <c>{"text": "...", "label": 1}</c>.</summary>
/// <param name="Text">The text.</param>
/// <param name="Label">The class index (a JSON integer, or <c>true</c>/<c>false</c> as 1/0).</param>
public sealed record TextLabelExample(string Text, int Label);

/// <summary>A prompt and the completion a causal language model should learn to produce after it.</summary>
/// <param name="Prompt">The prompt (context only: no loss on its tokens when completion-only loss is used).</param>
/// <param name="Completion">The completion (the tokens the model is trained to predict).</param>
public sealed record PromptCompletionExample(string Prompt, string Completion);

/// <summary>A JSONL line that could not be read; the message starts with <c>file:line:</c>.</summary>
public sealed class JsonlFormatException : FormatException
{
    /// <summary>Creates the exception for line <paramref name="lineNumber"/> (1-based) of <paramref name="filePath"/>.</summary>
    /// <param name="filePath">The file that was read.</param>
    /// <param name="lineNumber">The 1-based line number.</param>
    /// <param name="problem">What is wrong with the line.</param>
    /// <param name="inner">The JSON parser's exception, when there was one.</param>
    public JsonlFormatException(string filePath, int lineNumber, string problem, Exception? inner = null)
        : base($"{filePath}:{lineNumber}: {problem}", inner)
    {
        FilePath = filePath;
        LineNumber = lineNumber;
    }

    /// <summary>The file that was read.</summary>
    public string FilePath { get; }

    /// <summary>The 1-based line number of the bad line.</summary>
    public int LineNumber { get; }
}

/// <summary>
/// Reads JSON Lines datasets: one JSON object per line, blank lines ignored. Every error names the file and the line.
/// </summary>
public static class JsonlDataset
{
    /// <summary>Reads text/label examples (e.g. <c>{"text": "Great film", "label": 1}</c>).</summary>
    /// <param name="path">The JSONL file.</param>
    /// <param name="textField">The property that holds the text.</param>
    /// <param name="labelField">The property that holds the class index (an integer, or a boolean read as 1/0).</param>
    /// <exception cref="JsonlFormatException">A line is not a JSON object, or a field is missing or has the wrong type.</exception>
    public static IReadOnlyList<TextLabelExample> ReadTextLabel(string path, string textField = "text", string labelField = "label")
    {
        var result = new List<TextLabelExample>();
        foreach (var (line, record) in ReadObjects(path))
            result.Add(new TextLabelExample(GetString(path, line, record, textField), GetLabel(path, line, record, labelField)));
        return result;
    }

    /// <summary>Reads prompt/completion examples (e.g. <c>{"prompt": "Q: 2+2? A:", "completion": " 4"}</c>).</summary>
    /// <param name="path">The JSONL file.</param>
    /// <param name="promptField">The property that holds the prompt.</param>
    /// <param name="completionField">The property that holds the completion.</param>
    /// <exception cref="JsonlFormatException">A line is not a JSON object, or a field is missing or not a string.</exception>
    public static IReadOnlyList<PromptCompletionExample> ReadPromptCompletion(string path, string promptField = "prompt", string completionField = "completion")
    {
        var result = new List<PromptCompletionExample>();
        foreach (var (line, record) in ReadObjects(path))
            result.Add(new PromptCompletionExample(GetString(path, line, record, promptField), GetString(path, line, record, completionField)));
        return result;
    }

    /// <summary>
    /// Parses each non-blank line of <paramref name="path"/> as a JSON object and yields it with its 1-based line number.
    /// Each element is a clone, valid after enumeration ends.
    /// </summary>
    /// <param name="path">The JSONL file.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="JsonlFormatException">A line is not valid JSON or not an object.</exception>
    public static IEnumerable<(int LineNumber, JsonElement Record)> ReadObjects(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"JSONL file not found: {path}", path);
        return Iterate(path);

        static IEnumerable<(int, JsonElement)> Iterate(string path)
        {
            int lineNumber = 0;
            foreach (string line in File.ReadLines(path))
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                JsonElement element;
                try
                {
                    using var doc = JsonDocument.Parse(line);
                    element = doc.RootElement.Clone();
                }
                catch (JsonException ex)
                {
                    throw new JsonlFormatException(path, lineNumber, $"not valid JSON ({ex.Message})", ex);
                }
                if (element.ValueKind != JsonValueKind.Object)
                    throw new JsonlFormatException(path, lineNumber, $"expected a JSON object, found {element.ValueKind}.");
                yield return (lineNumber, element);
            }
        }
    }

    private static string GetString(string path, int line, JsonElement record, string field)
    {
        if (!record.TryGetProperty(field, out var value))
            throw new JsonlFormatException(path, line, $"missing field \"{field}\".");
        if (value.ValueKind != JsonValueKind.String)
            throw new JsonlFormatException(path, line, $"field \"{field}\" must be a string, found {value.ValueKind}.");
        return value.GetString()!;
    }

    private static int GetLabel(string path, int line, JsonElement record, string field)
    {
        if (!record.TryGetProperty(field, out var value))
            throw new JsonlFormatException(path, line, $"missing field \"{field}\".");
        switch (value.ValueKind)
        {
            case JsonValueKind.True: return 1;
            case JsonValueKind.False: return 0;
            case JsonValueKind.Number when value.TryGetInt32(out int label) && label >= 0: return label;
            default:
                throw new JsonlFormatException(path, line, $"field \"{field}\" must be a non-negative integer class index or a boolean, found {value.GetRawText()}.");
        }
    }
}
