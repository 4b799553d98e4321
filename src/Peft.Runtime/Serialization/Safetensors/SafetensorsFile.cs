using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// Reads and writes the Hugging Face safetensors format: an 8-byte little-endian header length, a UTF-8 JSON header
/// (tensor name to dtype, shape and data offsets, plus an optional <c>__metadata__</c> string map), then the raw
/// little-endian, row-major tensor data.
/// </summary>
public static class SafetensorsFile
{
    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> atomically: the file is written to a temporary file in the
    /// same directory, flushed to disk, then renamed over <paramref name="path"/>, so a reader sees either the previous file
    /// or the complete new one, and a failure leaves the previous file untouched and no temporary file behind.
    /// </summary>
    /// <param name="path">The destination file; its directory must exist.</param>
    /// <param name="tensors">
    /// Name and tensor pairs, written in this order. Names must be unique, non-empty and not <c>__metadata__</c>. Tensors may
    /// live on any device and have any strides; their contiguous CPU bytes are written, chunk by chunk. Their dtype must be one
    /// of <see cref="SafetensorsDType"/>. The tensors are neither modified nor disposed.
    /// </param>
    /// <param name="metadata">
    /// Optional <c>__metadata__</c> entries, written first with keys in ordinal order. <see langword="null"/> writes no
    /// <c>__metadata__</c> key; an empty map writes an empty object (as the Python library does).
    /// </param>
    /// <exception cref="ArgumentException">A name is empty, reserved or repeated, or a tensor has an unsupported dtype. Nothing is written.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => Write(path, tensors, metadata, TensorChunks.DefaultChunkBytes, beforeTensorData: null);

    /// <summary>Opens <paramref name="path"/> and validates its header fully (layout, dtypes, shapes, offsets) before returning.</summary>
    /// <param name="path">The safetensors file.</param>
    /// <returns>A reader; dispose it to close the file.</returns>
    /// <exception cref="SafetensorsFormatException">The file is malformed, is not a regular file (a directory, a device, a
    /// link loop) or cannot be opened; the message names the file and the problem.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static SafetensorsReader Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var fullPath = System.IO.Path.GetFullPath(path);
        if (RegularFile.Problem(fullPath) is { } what)
        {
            throw new SafetensorsFormatException(fullPath, $"the path is {what}");
        }
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new SafetensorsFormatException(fullPath, $"the file cannot be opened ({e.Message})", e);
        }
        try
        {
            var header = SafetensorsHeader.Read(fullPath, handle);
            return new SafetensorsReader(fullPath, handle, header);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <see cref="Write(string, IEnumerable{KeyValuePair{string, Tensor}}, IReadOnlyDictionary{string, string}?)"/> with an
    /// explicit chunk size and a hook called (with the tensor's name) before each tensor's data is written, after the
    /// temporary file exists: tests use it to fail mid-write.
    /// </summary>
    internal static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata,
        int chunkBytes, Action<string>? beforeTensorData)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);

        // Everything that can be rejected is rejected before any file is created.
        var items = new List<KeyValuePair<string, Tensor>>();
        var infos = new List<SafetensorsTensorInfo>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var (name, tensor) in tensors)
        {
            if (string.IsNullOrEmpty(name))
            {
                throw new ArgumentException("A tensor name is null or empty; safetensors names must be non-empty.", nameof(tensors));
            }
            if (name == SafetensorsHeader.MetadataKey)
            {
                throw new ArgumentException($"'{SafetensorsHeader.MetadataKey}' is reserved for the metadata and cannot name a tensor.", nameof(tensors));
            }
            if (!names.Add(name))
            {
                throw new ArgumentException($"Duplicate tensor name '{name}'; safetensors names must be unique.", nameof(tensors));
            }
            if (tensor is null)
            {
                throw new ArgumentException($"Tensor '{name}' is null.", nameof(tensors));
            }
            var scalarType = tensor.dtype;
            if (!scalarType.TryGetSafetensorsDType(out var dtype))
            {
                throw new ArgumentException(
                    $"Tensor '{name}' has dtype {scalarType}, which cannot be written (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL).",
                    nameof(tensors));
            }
            long[] shape = tensor.shape;
            long byteLength = checked(tensor.numel() * dtype.GetElementSize());
            infos.Add(new SafetensorsTensorInfo(name, dtype, shape, offset, checked(offset + byteLength)));
            items.Add(new KeyValuePair<string, Tensor>(name, tensor));
            offset = checked(offset + byteLength);
        }
        if (metadata is not null)
        {
            foreach (var (key, value) in metadata)
            {
                if (key is null || value is null)
                {
                    throw new ArgumentException("Metadata keys and values must not be null.", nameof(metadata));
                }
            }
        }

        byte[] header = SafetensorsHeader.Build(infos, metadata);
        long totalLength = checked(header.Length + offset);

        Checkpoints.AtomicFile.Write(path, stream =>
        {
            stream.Write(header);
            for (int i = 0; i < items.Count; i++)
            {
                var (name, tensor) = items[i];
                beforeTensorData?.Invoke(name);
                long written = TensorChunks.ForEachReadOnly(tensor, chunkBytes, (chunk, _) => stream.Write(chunk));
                if (written != infos[i].ByteLength)
                {
                    throw new InvalidOperationException(
                        $"Tensor '{name}' produced {written} bytes but its header entry promised {infos[i].ByteLength} (was it resized while being written?).");
                }
            }

            if (stream.Position != totalLength)
            {
                throw new InvalidOperationException($"Wrote {stream.Position} bytes to '{path}' but expected {totalLength}.");
            }
        }, totalLength);
    }
}
