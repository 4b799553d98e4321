using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Checkpoints;
using Peft.Training.Checkpoints;

namespace Peft.Serialization;

/// <summary>The JSON files this library reads; each kind reports problems with its own exception type.</summary>
internal enum JsonFileKind
{
    /// <summary>PEFT's <c>adapter_config.json</c>: <see cref="AdapterFormatException"/>.</summary>
    AdapterConfig,

    /// <summary>A Hugging Face <c>config.json</c>: <see cref="CheckpointFormatException"/>.</summary>
    ModelConfig,

    /// <summary><c>model.safetensors.index.json</c>: <see cref="CheckpointFormatException"/>.</summary>
    ShardIndex,

    /// <summary>A training checkpoint's <c>manifest.json</c>: <see cref="CheckpointException"/>.</summary>
    TrainingManifest,

    /// <summary>A JSON value in a safetensors file's <c>__metadata__</c> (<see cref="MergedAdapterMetadata"/>): <see cref="SafetensorsFormatException"/>.</summary>
    SafetensorsMetadata,
}

/// <summary>
/// The one reader of JSON files: refuses anything but a regular file (directories, devices such as <c>/dev/zero</c>,
/// FIFOs, link loops), files above <see cref="PeftFileLimits.MaxJsonBytes"/>, invalid UTF-8 (raw bytes or escaped lone
/// surrogates, in keys and values), duplicate keys at any level, nesting deeper than <see cref="PeftFileLimits.MaxJsonDepth"/>,
/// comments, trailing commas and a top level that is not an object. Every problem is the file kind's
/// <see cref="PeftFileException"/> naming the file (and the key, where there is one).
/// </summary>
internal static class JsonFile
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Reads <paramref name="path"/> as a JSON object.</summary>
    /// <exception cref="FileNotFoundException">Nothing exists at the path.</exception>
    /// <exception cref="PeftFileException">The kind's exception for every other problem.</exception>
    internal static JsonObject ReadObject(string path, JsonFileKind kind)
    {
        var fullPath = Path.GetFullPath(path);
        var bytes = ReadCapped(fullPath, PeftFileLimits.MaxJsonBytes, (field, problem, inner) => Error(kind, fullPath, field, problem, inner));
        return ParseObject(bytes, fullPath, kind);
    }

    /// <summary>Parses JSON text (already in memory) with the same checks as <see cref="ReadObject"/>.</summary>
    internal static JsonObject ParseObject(string text, string source, JsonFileKind kind)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte[] bytes;
        try
        {
            bytes = s_strictUtf8.GetBytes(text);
        }
        catch (EncoderFallbackException e)
        {
            throw Error(kind, source, null, "the text holds a lone UTF-16 surrogate, which is not valid Unicode", e);
        }
        return ParseObject(bytes, source, kind);
    }

    /// <summary>Parses UTF-8 JSON bytes with the same checks as <see cref="ReadObject"/>.</summary>
    internal static JsonObject ParseObject(ReadOnlyMemory<byte> utf8, string source, JsonFileKind kind)
    {
        if (utf8.Length > PeftFileLimits.MaxJsonBytes)
        {
            throw Error(kind, source, null, $"the file is {utf8.Length} bytes, larger than the {PeftFileLimits.MaxJsonBytes} bytes a JSON file may have (PeftFileLimits.MaxJsonBytes)", null);
        }

        var span = utf8.Span;
        if (span.StartsWith("\uFEFF"u8))
        {
            utf8 = utf8[3..];
            span = utf8.Span;
        }

        if (InvalidUtf8Offset(span) is long bad)
        {
            throw Error(kind, source, null, $"the file is not valid UTF-8 (invalid byte 0x{span[(int)bad]:X2} at offset {bad})", null);
        }

        var options = new JsonDocumentOptions
        {
            AllowTrailingCommas = false,
            CommentHandling = JsonCommentHandling.Disallow,
            MaxDepth = PeftFileLimits.MaxJsonDepth,
            AllowDuplicateProperties = false,
        };
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(utf8, options);
        }
        catch (JsonException e)
        {
            throw Error(kind, source, null, $"not valid JSON ({e.Message})", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Error(kind, source, null, $"the top level must be a JSON object, not {Describe(document.RootElement.ValueKind)}", null);
            }

            if (FindInvalidString(document.RootElement, "") is { } where)
            {
                throw Error(kind, source, where.Length == 0 ? null : where,
                    $"{(where.Length == 0 ? "a key at the top level" : $"\"{where}\"")} holds a string that is not valid Unicode (an escaped lone surrogate such as \\ud800)", null);
            }

            return JsonObject.Create(document.RootElement.Clone())!;
        }
    }

    /// <summary>
    /// Reads a whole regular file of at most <paramref name="maxBytes"/> bytes. Non-regular files, links that cannot be
    /// resolved, larger files and read errors go to <paramref name="error"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing exists at the path.</exception>
    internal static byte[] ReadCapped(string fullPath, long maxBytes, Func<string?, string, Exception?, Exception> error)
    {
        if (RegularFile.Problem(fullPath) is { } what)
        {
            throw error(null, $"the path is {what}", null);
        }

        try
        {
            using var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.SequentialScan);
            long length = stream.Length;
            if (length > maxBytes)
            {
                throw error(null, $"the file is {length} bytes, larger than the {maxBytes} bytes a JSON file may have (PeftFileLimits.MaxJsonBytes)", null);
            }

            // The length is only a hint (the file may grow while it is read): never read more than the cap + 1.
            var buffer = new ArrayBufferWriter<byte>((int)Math.Max(16, length));
            while (true)
            {
                var span = buffer.GetSpan(1 << 16);
                int read = stream.Read(span);
                if (read == 0) break;
                buffer.Advance(read);
                if (buffer.WrittenCount > maxBytes)
                {
                    throw error(null, $"the file is larger than the {maxBytes} bytes a JSON file may have (PeftFileLimits.MaxJsonBytes)", null);
                }
            }
            return buffer.WrittenSpan.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw error(null, $"the file cannot be read ({e.Message})", e);
        }
    }

    /// <summary>The offset of the first byte that is not part of valid UTF-8, or <see langword="null"/>.</summary>
    internal static long? InvalidUtf8Offset(ReadOnlySpan<byte> utf8)
    {
        if (System.Text.Unicode.Utf8.IsValid(utf8)) return null;
        var chars = ArrayPool<char>.Shared.Rent(4096);
        try
        {
            long offset = 0;
            while (!utf8.IsEmpty)
            {
                var status = System.Text.Unicode.Utf8.ToUtf16(utf8, chars, out int read, out _, replaceInvalidSequences: false, isFinalBlock: true);
                if (status is OperationStatus.InvalidData or OperationStatus.NeedMoreData) return offset + read;
                offset += read;
                utf8 = utf8[read..];
                if (status == OperationStatus.Done) break;
            }
            return null;
        }
        finally
        {
            ArrayPool<char>.Shared.Return(chars);
        }
    }

    /// <summary>
    /// The JSON path (dotted keys, <c>[i]</c> indices) of the first key or string value that cannot be read as a .NET
    /// string (an escaped lone surrogate), or <see langword="null"/> when every string is valid.
    /// </summary>
    internal static string? FindInvalidString(JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        return path;
                    }
                    var inner = FindInvalidString(property.Value, path.Length == 0 ? name : path + "." + name);
                    if (inner is not null) return inner;
                }
                return null;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in element.EnumerateArray())
                {
                    var inner = FindInvalidString(item, $"{path}[{i++}]");
                    if (inner is not null) return inner;
                }
                return null;
            case JsonValueKind.String:
                try
                {
                    _ = element.GetString();
                    return null;
                }
                catch (InvalidOperationException)
                {
                    return path;
                }
            default:
                return null;
        }
    }

    /// <summary>The file kind's exception.</summary>
    internal static PeftFileException Error(JsonFileKind kind, string path, string? field, string problem, Exception? inner) => kind switch
    {
        JsonFileKind.AdapterConfig => new AdapterFormatException(path, field, problem, inner),
        JsonFileKind.ModelConfig or JsonFileKind.ShardIndex => new CheckpointFormatException(path, field, problem, inner),
        JsonFileKind.TrainingManifest => new CheckpointException(path, field, problem, inner),
        JsonFileKind.SafetensorsMetadata => new SafetensorsFormatException(path, field ?? "__metadata__." + MergedAdapterMetadata.MetadataKey, $"__metadata__.{MergedAdapterMetadata.MetadataKey}: {problem}", inner),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    internal static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
