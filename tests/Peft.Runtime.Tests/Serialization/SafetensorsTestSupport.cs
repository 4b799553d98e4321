using System.Buffers.Binary;
using System.Text;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>A fresh directory per test, removed afterwards; plus helpers to build safetensors bytes by hand.</summary>
public sealed class SafetensorsTempDirectory : IDisposable
{
    /// <summary>Creates the directory.</summary>
    public SafetensorsTempDirectory()
    {
        Root = Path.Combine(Path.GetTempPath(), "peft-safetensors-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);
    }

    /// <summary>The directory.</summary>
    public string Root { get; }

    /// <summary>A path inside the directory.</summary>
    public string File(string name) => Path.Combine(Root, name);

    /// <summary>Every file name in the directory, sorted.</summary>
    public string[] FileNames() => Directory.GetFiles(Root).Select(p => Path.GetFileName(p)!).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    /// <summary>Writes raw bytes to a file in the directory and returns its path.</summary>
    public string WriteRaw(string name, byte[] bytes)
    {
        var path = File(name);
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a leftover temp directory must not fail a test.
        }
    }
}

internal static class SafetensorsBytes
{
    /// <summary>8-byte little-endian length of the (space-padded) JSON, the JSON, the padding, then the data.</summary>
    public static byte[] Build(string json, byte[] data, int paddingSpaces = 0)
    {
        var header = Encoding.UTF8.GetBytes(json + new string(' ', paddingSpaces));
        var result = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)header.Length);
        header.CopyTo(result, 8);
        data.CopyTo(result, 8 + header.Length);
        return result;
    }

    /// <summary>Just a length prefix (any value) followed by the given bytes.</summary>
    public static byte[] WithLength(ulong length, byte[] rest)
    {
        var result = new byte[8 + rest.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(result, length);
        rest.CopyTo(result, 8);
        return result;
    }

    /// <summary>The row-major bytes of a CPU tensor.</summary>
    public static byte[] Of(Tensor tensor)
    {
        using var contiguous = tensor.contiguous();
        return contiguous.bytes.ToArray();
    }

    /// <summary>Little-endian bytes of a sequence of 16-bit patterns.</summary>
    public static byte[] FromUInt16(params ushort[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), values[i]);
        }
        return bytes;
    }
}
