using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Text.Unicode;
using Peft.Text;

namespace CausalLM;

/// <summary>How <see cref="DataFile"/> reads a file.</summary>
public enum DataFormat
{
    /// <summary>UTF-8 text: the whole file is one document.</summary>
    PlainText,

    /// <summary>JSON Lines: one JSON object per line, each one document (its text field).</summary>
    Jsonl,
}

/// <summary>A <c>--data</c> file that cannot be used. The message is one line that names the file and says what to do.</summary>
/// <param name="message">The message.</param>
public sealed class DataFileException(string message) : Exception(message);

/// <summary>The documents read from a <c>--data</c> file.</summary>
/// <param name="Path">The file as given.</param>
/// <param name="Format">How it was read.</param>
/// <param name="Documents">The texts, in file order (JSONL lines whose text is empty are left out).</param>
/// <param name="Characters">Characters in all documents together.</param>
public sealed record DataFileText(string Path, DataFormat Format, IReadOnlyList<string> Documents, long Characters);

/// <summary>
/// The user's own text for the causal-LM sample (<c>--data FILE</c>): a UTF-8 text file, or a JSONL file whose lines
/// each hold one document in a string field; then a deterministic train/validation split of the tokenised blocks.
/// </summary>
/// <remarks>
/// Every problem with the file is a <see cref="DataFileException"/> whose message names the file (and the line, for
/// JSONL) and the fix, so the sample prints it as one line and exits 2.
/// </remarks>
public static partial class DataFile
{
    /// <summary>The share of the blocks held out for validation (at least one block).</summary>
    public const double ValidationFraction = 0.1;

    /// <summary>
    /// <see cref="DataFormat.Jsonl"/> for <c>.jsonl</c> and <c>.json</c> files, <see cref="DataFormat.PlainText"/> for
    /// <c>.txt</c> files; any other name is JSONL when its first non-blank line is a JSON object, else plain text.
    /// </summary>
    /// <param name="path">The file (it must exist when the extension does not decide).</param>
    public static DataFormat DetectFormat(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return FormatFromExtension(path) ?? FormatFromContent(ReadText(path));
    }

    /// <summary>Reads the documents of <paramref name="path"/> (format from <see cref="DetectFormat"/>).</summary>
    /// <param name="path">A UTF-8 text file or a JSONL file.</param>
    /// <param name="textField">The JSONL field that holds each document's text.</param>
    /// <exception cref="DataFileException">The file is missing, empty, not UTF-8, or (JSONL) a line is not a JSON
    /// object or lacks a string <paramref name="textField"/>.</exception>
    public static DataFileText Read(string path, string textField = "text")
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentException.ThrowIfNullOrWhiteSpace(textField);
        string text = ReadText(path);
        var format = FormatFromExtension(path) ?? FormatFromContent(text);
        if (string.IsNullOrWhiteSpace(text))
            throw new DataFileException($"--data {path}: the file is empty (no text). Put the text to train on in it: plain UTF-8 text, or one JSON object per line such as {{\"{textField}\": \"...\"}}.");

        IReadOnlyList<string> documents = format == DataFormat.PlainText ? [text] : ReadJsonl(path, textField);
        if (documents.Count == 0)
            throw new DataFileException($"--data {path}: every \"{textField}\" is an empty string, so there is no text to train on. Fill the field, or pass --text-field NAME with the field that holds the text.");
        return new DataFileText(path, format, documents, documents.Sum(d => (long)d.Length));
    }

    /// <summary>
    /// Cuts <paramref name="tokens"/> into <paramref name="blockSize"/>-token blocks (<see cref="CausalLmData.Blocks"/>)
    /// and holds out the last <see cref="ValidationFraction"/> of them (at least one) for validation: the held-out text
    /// is the end of the file, so no validation block has training text on both sides of it, and a file always splits
    /// the same way.
    /// </summary>
    /// <param name="path">The file the tokens come from (for the error message).</param>
    /// <param name="tokens">The token stream of the whole file.</param>
    /// <param name="blockSize">Tokens per block.</param>
    /// <param name="tokenizer">The tokenizer's name (for the error message).</param>
    /// <exception cref="DataFileException">The stream is too short for one training and one validation block.</exception>
    public static DatasetSplit<TokenizedExample> SplitBlocks(string path, IReadOnlyList<int> tokens, int blockSize, string tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        int needed = MinimumTokens(blockSize);
        if (tokens.Count < needed)
            throw new DataFileException(string.Create(CultureInfo.InvariantCulture,
                $"--data {path}: {tokens.Count:N0} tokens with {tokenizer}, but --block-size {blockSize} needs at least {needed:N0} (one training and one validation block of {blockSize} tokens, plus the last block's next token). Add text to the file, or pass a smaller --block-size."));
        var blocks = CausalLmData.Blocks(tokens, blockSize);
        int validation = Math.Max(1, (int)Math.Round(blocks.Count * ValidationFraction, MidpointRounding.AwayFromZero));
        return new DatasetSplit<TokenizedExample>(blocks.Take(blocks.Count - validation).ToList(), blocks.Skip(blocks.Count - validation).ToList());
    }

    /// <summary>The shortest token stream that gives one training and one validation block: 2 x <paramref name="blockSize"/> + 1.</summary>
    /// <param name="blockSize">Tokens per block.</param>
    public static int MinimumTokens(int blockSize) => 2 * blockSize + 1;

    /// <summary>The file as UTF-8 text (a byte-order mark dropped); invalid UTF-8 is an error, not replaced.</summary>
    private static string ReadText(string path)
    {
        if (Directory.Exists(path))
            throw new DataFileException($"--data {path}: that is a folder; give one file (plain UTF-8 text, or JSONL with one {{\"text\": \"...\"}} object per line).");
        if (!File.Exists(path))
            throw new DataFileException($"--data {path}: no such file (looked in {System.IO.Path.GetFullPath(path)}). Check the path; a relative path is taken from the current folder.");
        byte[] bytes = File.ReadAllBytes(path);
        ReadOnlySpan<byte> span = bytes;
        if (span.StartsWith(Encoding.UTF8.Preamble)) span = span[Encoding.UTF8.Preamble.Length..];
        var chars = new char[span.Length]; // UTF-8 never gives more UTF-16 units than bytes
        var status = Utf8.ToUtf16(span, chars, out int read, out int written, replaceInvalidSequences: false);
        if (status != OperationStatus.Done)
        {
            int offset = read + (bytes.Length - span.Length);
            int line = 1 + span[..read].Count((byte)'\n');
            throw new DataFileException(string.Create(CultureInfo.InvariantCulture,
                $"--data {path}:{line}: not UTF-8 text (invalid byte 0x{bytes[offset]:X2} at byte offset {offset:N0}). Save it as UTF-8 (for a Windows-1252 file: iconv -f WINDOWS-1252 -t UTF-8 FILE > FILE.utf8)."));
        }
        return new string(chars, 0, written);
    }

    private static DataFormat? FormatFromExtension(string path) => System.IO.Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".jsonl" or ".json" => DataFormat.Jsonl,
        ".txt" => DataFormat.PlainText,
        _ => null,
    };

    /// <summary>JSONL when the first non-blank line is a JSON object.</summary>
    private static DataFormat FormatFromContent(string text)
    {
        foreach (var line in text.AsSpan().EnumerateLines())
        {
            if (line.IsWhiteSpace()) continue;
            if (line.TrimStart()[0] != '{') return DataFormat.PlainText;
            try
            {
                using var json = JsonDocument.Parse(line.ToString());
                return json.RootElement.ValueKind == JsonValueKind.Object ? DataFormat.Jsonl : DataFormat.PlainText;
            }
            catch (JsonException)
            {
                return DataFormat.PlainText;
            }
        }
        return DataFormat.PlainText;
    }

    private static List<string> ReadJsonl(string path, string textField)
    {
        var documents = new List<string>();
        try
        {
            foreach (var (line, record) in JsonlDataset.ReadObjects(path))
            {
                if (!record.TryGetProperty(textField, out var value))
                {
                    var names = record.EnumerateObject().Select(p => $"\"{p.Name}\"").ToList();
                    string has = names.Count == 0 ? "the object is empty" : $"the line has {string.Join(", ", names.Take(8))}{(names.Count > 8 ? ", ..." : "")}";
                    throw new DataFileException($"--data {path}:{line}: no field \"{textField}\" ({has}). Pass --text-field NAME with the field that holds the text, or add \"{textField}\" to the line.");
                }
                if (value.ValueKind != JsonValueKind.String)
                    throw new DataFileException($"--data {path}:{line}: field \"{textField}\" is {Describe(value.ValueKind)}, not a string. Make it a string on every line, or pass --text-field NAME with the field that holds the text.");
                string text = value.GetString()!;
                if (text.Length > 0) documents.Add(text);
            }
        }
        catch (JsonlFormatException e)
        {
            // JsonlDataset: a line that is not JSON, or JSON that is not an object (e.g. a JSON array file).
            string prefix = $"{e.FilePath}:{e.LineNumber}: ";
            string problem = e.Message.StartsWith(prefix, StringComparison.Ordinal) ? e.Message[prefix.Length..] : e.Message;
            if (e.InnerException is JsonException { BytePositionInLine: long column })
                problem = JsonPosition().Replace(problem, "") + string.Create(CultureInfo.InvariantCulture, $", at byte {column + 1} of the line.");
            throw new DataFileException(
                $"--data {path}:{e.LineNumber}: {OneLine(problem)} JSONL needs one JSON object per line, such as {{\"{textField}\": \"...\"}} " +
                "(a JSON array, or an object spread over several lines, is not JSONL); for plain text, name the file .txt.");
        }
        return documents;
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Null => "null",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => kind.ToString(),
    };

    private static string OneLine(string text) => text.ReplaceLineEndings(" ").TrimEnd();

    /// <summary>System.Text.Json's own position suffix (its line number counts within the one-line document, so it is always 0).</summary>
    [GeneratedRegex(@"\s*LineNumber: \d+ \| BytePositionInLine: \d+\.")]
    private static partial Regex JsonPosition();
}
