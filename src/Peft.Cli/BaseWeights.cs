using Peft.Checkpoints;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Cli;

/// <summary>
/// The base weights <c>peft merge</c> reads: one safetensors file, or a Hugging Face model directory (config.json with
/// <c>model.safetensors</c>, or shards listed by <c>model.safetensors.index.json</c>), validated by
/// <see cref="HfCheckpoint.Open"/> before anything is read. Each weight file is one of <see cref="Shards"/>; a tensor name
/// belongs to the shard the index maps it to (the one file for a single file).
/// </summary>
internal sealed class BaseWeights : IDisposable
{
    private readonly Dictionary<string, SafetensorsReader> _byName;

    private BaseWeights(string path, bool isDirectory, bool isSharded, IReadOnlyList<SafetensorsReader> shards,
        Dictionary<string, SafetensorsReader> byName, IReadOnlyList<string> names, IReadOnlyList<MergedAdapterRecord> mergedAdapters)
    {
        MergedAdapters = mergedAdapters;
        Path = path;
        IsDirectory = isDirectory;
        IsSharded = isSharded;
        Shards = shards;
        _byName = byName;
        Names = names;
    }

    /// <summary>The full path of the file or the directory.</summary>
    public string Path { get; }

    /// <summary>Whether the base is a Hugging Face model directory.</summary>
    public bool IsDirectory { get; }

    /// <summary>Whether the directory's weights are shards listed by an index.</summary>
    public bool IsSharded { get; }

    /// <summary>The weight files: the one file, or the shards in index order.</summary>
    public IReadOnlyList<SafetensorsReader> Shards { get; }

    /// <summary>Every tensor name: the file's header order, or the index's <c>weight_map</c> order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The adapters the base records as already merged into it (a merged export; <see cref="MergedAdapterMetadata"/>).</summary>
    public IReadOnlyList<MergedAdapterRecord> MergedAdapters { get; }

    /// <summary>What names the base in messages about a tensor it lacks: the file, or the directory.</summary>
    public string Describe => IsSharded ? System.IO.Path.Combine(Path, HfCheckpoint.IndexFileName) : IsDirectory ? Path : Shards[0].Path;

    /// <summary>Opens a safetensors file or a Hugging Face model directory.</summary>
    /// <param name="path">The file or directory.</param>
    /// <returns>The open base; dispose it to close the files.</returns>
    /// <exception cref="SafetensorsFormatException">The file is malformed.</exception>
    /// <exception cref="CheckpointFormatException">The directory is not a valid Hugging Face model directory (the message names the file).</exception>
    public static BaseWeights Open(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(full))
        {
            var reader = SafetensorsFile.Open(full);
            try
            {
                return new BaseWeights(full, false, false, [reader], reader.Tensors.ToDictionary(t => t.Name, _ => reader, StringComparer.Ordinal),
                    reader.Tensors.Select(t => t.Name).ToList(), MergedAdapterMetadata.Read(reader));
            }
            catch
            {
                reader.Dispose();
                throw;
            }
        }

        // Open validates config.json, the index and every shard's header before anything is read.
        using var checkpoint = HfCheckpoint.Open(full);
        var readers = new List<SafetensorsReader>();
        try
        {
            var byFile = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
            foreach (var file in checkpoint.WeightFiles)
            {
                var reader = SafetensorsFile.Open(file);
                readers.Add(reader);
                byFile.Add(file, reader);
            }

            var byName = checkpoint.TensorNames.ToDictionary(n => n, n => byFile[checkpoint.GetFile(n)], StringComparer.Ordinal);
            return new BaseWeights(checkpoint.Directory, true, checkpoint.IsSharded, readers, byName, checkpoint.TensorNames.ToList(), checkpoint.MergedAdapters);
        }
        catch
        {
            foreach (var reader in readers) reader.Dispose();
            throw;
        }
    }

    /// <summary>Whether the base has tensor <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The header entry of tensor <paramref name="name"/>.</summary>
    public SafetensorsTensorInfo GetInfo(string name) => _byName[name].GetInfo(name);

    /// <summary>The weight file that holds tensor <paramref name="name"/>.</summary>
    public SafetensorsReader ShardOf(string name) => _byName[name];

    /// <summary>Reads tensor <paramref name="name"/> (a new CPU tensor the caller owns).</summary>
    public Tensor ReadTensor(string name) => _byName[name].ReadTensor(name);

    /// <summary>Closes the files.</summary>
    public void Dispose()
    {
        foreach (var reader in Shards) reader.Dispose();
    }
}
