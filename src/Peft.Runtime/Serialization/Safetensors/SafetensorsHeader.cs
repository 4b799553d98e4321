using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace Peft.Serialization;

/// <summary>Reads, validates and builds safetensors headers (the length prefix plus the JSON object).</summary>
internal sealed class SafetensorsHeader
{
    /// <summary>The largest header the reader accepts, as in the Python library (100 MB).</summary>
    internal const long MaxHeaderBytes = 100_000_000;

    /// <summary>The key of the optional string-to-string metadata object.</summary>
    internal const string MetadataKey = "__metadata__";

    private SafetensorsHeader(long dataStart, long dataLength, IReadOnlyDictionary<string, string> metadata, IReadOnlyList<SafetensorsTensorInfo> tensors)
    {
        DataStart = dataStart;
        DataLength = dataLength;
        Metadata = metadata;
        Tensors = tensors;
    }

    /// <summary>Absolute file offset of the data section (8 + header length).</summary>
    internal long DataStart { get; }

    /// <summary>Length in bytes of the data section.</summary>
    internal long DataLength { get; }

    /// <summary>The <c>__metadata__</c> entries; empty when absent.</summary>
    internal IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensor entries, in header order.</summary>
    internal IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>Reads and fully validates the header of the open file <paramref name="handle"/>.</summary>
    internal static SafetensorsHeader Read(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
        {
            throw new SafetensorsFormatException(path, $"the file is {fileLength} bytes long, shorter than the 8-byte header length prefix");
        }

        Span<byte> prefix = stackalloc byte[8];
        ReadExactly(path, handle, prefix, 0);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderBytes)
        {
            throw new SafetensorsFormatException(path, $"the header length {headerLength} exceeds the maximum of {MaxHeaderBytes} bytes");
        }
        if ((long)headerLength > fileLength - 8)
        {
            throw new SafetensorsFormatException(path, $"the header length {headerLength} exceeds the file size: only {fileLength - 8} bytes follow the 8-byte prefix");
        }

        var json = new byte[(int)headerLength];
        ReadExactly(path, handle, json, 8);
        long dataStart = 8 + (long)headerLength;
        return Parse(path, json, fileLength - dataStart, dataStart);
    }

    /// <summary>Parses and validates a header's JSON against a data section of <paramref name="dataLength"/> bytes.</summary>
    internal static SafetensorsHeader Parse(string path, ReadOnlyMemory<byte> json, long dataLength, long dataStart)
    {
        if (JsonFile.InvalidUtf8Offset(json.Span) is long bad)
        {
            throw new SafetensorsFormatException(path, $"the header is not valid UTF-8 (invalid byte 0x{json.Span[(int)bad]:X2} at header offset {bad})");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });
        }
        catch (JsonException ex)
        {
            throw new SafetensorsFormatException(path, $"the header is not valid JSON: {ex.Message}", ex);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new SafetensorsFormatException(path, $"the header is not a JSON object (it is {Describe(root.ValueKind)})");
            }

            // Every key and string must be readable as .NET text before any is used: an escaped lone surrogate
            // ("\ud800") is valid JSON syntax but not Unicode.
            if (JsonFile.FindInvalidString(root, "") is { } where)
            {
                throw new SafetensorsFormatException(path, where.Length == 0 ? null : where,
                    $"{(where.Length == 0 ? "a tensor name" : $"the header entry '{where}'")} holds a string that is not valid Unicode (an escaped lone surrogate such as \\ud800)");
            }

            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var tensors = new List<SafetensorsTensorInfo>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                {
                    throw new SafetensorsFormatException(path, $"duplicate key '{property.Name}' in the header");
                }
                if (property.Name == MetadataKey)
                {
                    ParseMetadata(path, property.Value, metadata);
                }
                else
                {
                    tensors.Add(ParseTensor(path, property.Name, property.Value));
                }
            }

            ValidateLayout(path, tensors, dataLength);
            return new SafetensorsHeader(dataStart, dataLength, metadata.AsReadOnly(), tensors.AsReadOnly());
        }
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new SafetensorsFormatException(path, $"'{MetadataKey}' must be an object of strings, but it is {Describe(value.ValueKind)}");
        }
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
            {
                throw new SafetensorsFormatException(path, $"metadata value '{entry.Name}' must be a string, but it is {Describe(entry.Value.ValueKind)}");
            }
            if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!))
            {
                throw new SafetensorsFormatException(path, $"duplicate metadata key '{entry.Name}'");
            }
        }
    }

    private static SafetensorsTensorInfo ParseTensor(string path, string name, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' must be an object with dtype, shape and data_offsets, but it is {Describe(value.ValueKind)}");
        }

        // Keys other than these three are ignored: the format does not forbid them. A repeated key is refused, as the
        // Python library's parser does, rather than silently taking one of the two values.
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var property in value.EnumerateObject())
        {
            if (!keys.Add(property.Name))
            {
                throw new SafetensorsFormatException(path, name, $"tensor '{name}' has the key '{property.Name}' twice");
            }
        }
        var dtypeElement = Required(path, name, value, "dtype");
        if (dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' has a dtype that is {Describe(dtypeElement.ValueKind)}, not a string");
        }
        string dtypeText = dtypeElement.GetString()!;
        if (!SafetensorsDTypeExtensions.TryParseHeaderString(dtypeText, out var dtype))
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' has an unknown or unsupported dtype '{dtypeText}' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
        }

        var shapeElement = Required(path, name, value, "shape");
        if (shapeElement.ValueKind != JsonValueKind.Array)
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' has a shape that is {Describe(shapeElement.ValueKind)}, not an array");
        }
        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            shape[i] = ReadNonNegativeInteger(path, name, "shape", i, dim);
            i++;
        }

        var offsetsElement = Required(path, name, value, "data_offsets");
        if (offsetsElement.ValueKind != JsonValueKind.Array || offsetsElement.GetArrayLength() != 2)
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' must have data_offsets as an array of exactly two integers [begin, end]");
        }
        long begin = ReadNonNegativeInteger(path, name, "data_offsets", 0, offsetsElement[0]);
        long end = ReadNonNegativeInteger(path, name, "data_offsets", 1, offsetsElement[1]);
        if (end < begin)
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' has reversed data_offsets [{begin}, {end}] (end before begin)");
        }

        long expectedBytes;
        try
        {
            long count = 1;
            foreach (var d in shape)
            {
                count = checked(count * d);
            }
            expectedBytes = checked(count * dtype.GetElementSize());
        }
        catch (OverflowException)
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' has a shape [{string.Join(", ", shape)}] whose byte size overflows a 64-bit integer");
        }
        if (end - begin != expectedBytes)
        {
            throw new SafetensorsFormatException(path,
                $"tensor '{name}' has data_offsets [{begin}, {end}] spanning {end - begin} bytes, which does not match its shape [{string.Join(", ", shape)}] of {dtype.ToHeaderString()} ({expectedBytes} bytes)");
        }

        return new SafetensorsTensorInfo(name, dtype, shape, begin, end);
    }

    private static JsonElement Required(string path, string name, JsonElement entry, string key)
    {
        if (!entry.TryGetProperty(key, out var element))
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' is missing the required key '{key}'");
        }
        return element;
    }

    private static long ReadNonNegativeInteger(string path, string name, string key, int index, JsonElement element)
    {
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt64(out long value))
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' has {key}[{index}] = {element.GetRawText()}, which is not an integer");
        }
        if (value < 0)
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}' has a negative {key}[{index}] = {value}");
        }
        return value;
    }

    /// <summary>The data regions, sorted by offset, must tile [0, dataLength) exactly: no overlap, no hole, nothing outside.</summary>
    private static void ValidateLayout(string path, List<SafetensorsTensorInfo> tensors, long dataLength)
    {
        foreach (var t in tensors)
        {
            if (t.End > dataLength)
            {
                throw new SafetensorsFormatException(path, $"tensor '{t.Name}' has data_offsets [{t.Begin}, {t.End}] outside the data section of {dataLength} bytes");
            }
        }

        var sorted = tensors.ToArray();
        Array.Sort(sorted, static (a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long cursor = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (var t in sorted)
        {
            if (t.Begin < cursor)
            {
                throw new SafetensorsFormatException(path, $"tensor '{t.Name}' [{t.Begin}, {t.End}] overlaps tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]");
            }
            if (t.Begin > cursor)
            {
                throw new SafetensorsFormatException(path, $"the data section has a hole: bytes [{cursor}, {t.Begin}) belong to no tensor");
            }
            cursor = t.End;
            previous = t;
        }
        if (cursor != dataLength)
        {
            throw new SafetensorsFormatException(path, $"the data section has a hole: bytes [{cursor}, {dataLength}) at its end belong to no tensor");
        }
    }

    /// <summary>
    /// Builds the header bytes: the 8-byte little-endian length, then compact JSON (<c>__metadata__</c> first with keys in
    /// ordinal order, then tensors in the given order), padded with spaces so that the data section starts at a multiple of 8.
    /// </summary>
    internal static byte[] Build(IReadOnlyList<SafetensorsTensorInfo> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        // Relaxed escaping writes non-ASCII text and characters such as '+' or '<' as UTF-8, as the Python library does;
        // the header is never embedded in HTML, so HTML-safe escaping would only make it differ.
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, Indented = false }))
        {
            writer.WriteStartObject();
            if (metadata is not null)
            {
                writer.WriteStartObject(MetadataKey);
                foreach (var key in metadata.Keys.OrderBy(static k => k, StringComparer.Ordinal))
                {
                    writer.WriteString(key, metadata[key]);
                }
                writer.WriteEndObject();
            }
            foreach (var t in tensors)
            {
                writer.WriteStartObject(t.Name);
                writer.WriteString("dtype", t.DType.ToHeaderString());
                writer.WriteStartArray("shape");
                foreach (var d in t.Shape)
                {
                    writer.WriteNumberValue(d);
                }
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(t.Begin);
                writer.WriteNumberValue(t.End);
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }

        int jsonLength = buffer.WrittenCount;
        int padded = checked(jsonLength + ((8 - (jsonLength % 8)) % 8));
        var result = new byte[8 + padded];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)padded);
        buffer.WrittenSpan.CopyTo(result.AsSpan(8));
        result.AsSpan(8 + jsonLength).Fill((byte)' ');
        return result;
    }

    /// <summary>Reads exactly <paramref name="destination"/>.Length bytes at <paramref name="offset"/>, or reports a truncated file.</summary>
    internal static void ReadExactly(string path, SafeFileHandle handle, Span<byte> destination, long offset)
    {
        while (!destination.IsEmpty)
        {
            int read = RandomAccess.Read(handle, destination, offset);
            if (read == 0)
            {
                throw new SafetensorsFormatException(path,
                    $"the file ended at byte {offset} while {destination.Length} more bytes were expected (was it truncated after it was opened?)");
            }
            destination = destination[read..];
            offset += read;
        }
    }

    private static string Describe(JsonValueKind kind) => kind switch
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
