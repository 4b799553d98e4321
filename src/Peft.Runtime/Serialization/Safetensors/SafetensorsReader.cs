using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// An open safetensors file whose header has been fully validated. Tensors are read on demand with positioned reads
/// straight into the new tensor's native memory, in bounded chunks; the file is never loaded whole.
/// </summary>
/// <remarks>
/// Obtain one with <see cref="SafetensorsFile.Open(string)"/> and dispose it to close the file. <see cref="ReadTensor(string)"/>
/// may be called from several threads at once (reads do not share a file position), but not concurrently with
/// <see cref="Dispose"/>. The file is opened with read and delete sharing, so a writer can atomically replace it meanwhile;
/// this reader keeps seeing the file it opened.
/// </remarks>
public sealed class SafetensorsReader : IDisposable
{
    private readonly SafeFileHandle _handle;
    private readonly SafetensorsHeader _header;
    private readonly Dictionary<string, Entry> _entries;

    internal SafetensorsReader(string path, SafeFileHandle handle, SafetensorsHeader header)
    {
        Path = path;
        _handle = handle;
        _header = header;
        _entries = new Dictionary<string, Entry>(header.Tensors.Count, StringComparer.Ordinal);
        foreach (var info in header.Tensors)
        {
            // A private copy of the shape: SafetensorsTensorInfo exposes its array, and a caller changing it must not
            // change what ReadTensor allocates.
            _entries.Add(info.Name, new Entry(info, (long[])info.Shape.Clone()));
        }
    }

    /// <summary>The full path of the file.</summary>
    public string Path { get; }

    /// <summary>The header's <c>__metadata__</c> object (string to string); empty when the file has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    /// <summary>The tensor entries, in header order.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors => _header.Tensors;

    /// <summary>Whether the file holds a tensor called <paramref name="name"/> (ordinal comparison).</summary>
    /// <param name="name">The tensor name.</param>
    /// <returns><see langword="true"/> when the header has an entry of that name.</returns>
    public bool Contains(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _entries.ContainsKey(name);
    }

    /// <summary>The header entry of the tensor called <paramref name="name"/>.</summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>The tensor's dtype, shape and data offsets.</returns>
    /// <exception cref="KeyNotFoundException">The file has no such tensor; the message names the tensor and the file.</exception>
    public SafetensorsTensorInfo GetInfo(string name) => GetEntry(name).Info;

    /// <summary>Reads the tensor called <paramref name="name"/> into a new CPU tensor with the file's dtype and shape.</summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>A new tensor that the caller owns.</returns>
    /// <exception cref="KeyNotFoundException">The file has no such tensor.</exception>
    /// <exception cref="SafetensorsFormatException">The file was truncated after it was opened, or a BOOL tensor holds a byte other than 0 or 1.</exception>
    /// <exception cref="ObjectDisposedException">The reader has been disposed.</exception>
    public Tensor ReadTensor(string name) => ReadTensor(name, TensorChunks.DefaultChunkBytes, out _);

    /// <summary>
    /// <see cref="ReadTensor(string)"/> with an explicit chunk size (the largest single read, rounded down to whole elements);
    /// reports how many chunks were copied.
    /// </summary>
    internal Tensor ReadTensor(string name, int chunkBytes, out long chunkCount)
    {
        var entry = GetEntry(name);
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);

        var info = entry.Info;
        var result = torch.empty(entry.Shape, info.DType.ToScalarType(), torch.CPU);
        try
        {
            long fileOffset = _header.DataStart + info.Begin;
            bool isBool = info.DType == SafetensorsDType.BOOL;
            chunkCount = TensorChunks.ForEach(result, chunkBytes, (chunk, byteOffset) =>
            {
                SafetensorsHeader.ReadExactly(Path, _handle, chunk, fileOffset + byteOffset);
                if (isBool)
                {
                    int bad = chunk.IndexOfAnyExcept((byte)0, (byte)1);
                    if (bad >= 0)
                    {
                        throw new SafetensorsFormatException(Path,
                            $"BOOL tensor '{info.Name}' holds the byte {chunk[bad]} at element {byteOffset + bad}; only 0 and 1 are valid");
                    }
                }
            });
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Closes the file. Tensors already read stay valid.</summary>
    public void Dispose() => _handle.Dispose();

    private Entry GetEntry(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_entries.TryGetValue(name, out var entry))
        {
            throw new KeyNotFoundException($"Tensor '{name}' is not in safetensors file '{Path}'.");
        }
        return entry;
    }

    private sealed record Entry(SafetensorsTensorInfo Info, long[] Shape);
}
