using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Checkpoints;

/// <summary>
/// A Hugging Face model directory on local disk: <c>config.json</c> plus the weights, either one
/// <c>model.safetensors</c> or shards listed by <c>model.safetensors.index.json</c> (<c>weight_map</c>: tensor name to
/// shard file). <see cref="Open"/> validates the whole layout (every shard exists and has a valid header, every mapped
/// tensor is in its shard) before returning; tensors are read on demand.
/// </summary>
/// <remarks>
/// Dispose the checkpoint to close its files. <see cref="LoadInto"/> copies the weights into a TorchSharp module whose
/// state-dict names match (optionally after prefix and rename mapping); <see cref="Save"/> writes a module back in the
/// same layout. Only safetensors weights are read: <c>pytorch_model.bin</c> (pickle) is not supported.
/// </remarks>
public sealed partial class HfCheckpoint : IDisposable
{
    /// <summary>The single-file weights name.</summary>
    public const string WeightsFileName = "model.safetensors";

    /// <summary>The shard index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>Model names tried, in order, for the input embedding that a tied output embedding copies.</summary>
    public static IReadOnlyList<string> InputEmbeddingCandidates { get; } =
        ["model.embed_tokens.weight", "transformer.wte.weight", "embed_tokens.weight", "wte.weight"];

    private static readonly IReadOnlyDictionary<string, string> s_safetensorsMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    private readonly List<SafetensorsReader> _readers;

    private readonly Dictionary<string, SafetensorsReader> _byTensor;

    private readonly List<string> _names;

    private HfCheckpoint(string directory, HfConfig config, bool isSharded, List<SafetensorsReader> readers,
        Dictionary<string, SafetensorsReader> byTensor, List<string> names)
    {
        MergedAdapters = MergedAdapterMetadata.Combine(readers.Select(ReadMergedAdapters));
        Directory = directory;
        Config = config;
        IsSharded = isSharded;
        _readers = readers;
        _byTensor = byTensor;
        _names = names;
    }

    /// <summary>The full path of the directory.</summary>
    public string Directory { get; }

    /// <summary>config.json.</summary>
    public HfConfig Config { get; }

    /// <summary>Whether the weights are sharded (read through <see cref="IndexFileName"/>).</summary>
    public bool IsSharded { get; }

    /// <summary>The full paths of the weight files: <see cref="WeightsFileName"/>, or the shards in index order.</summary>
    public IReadOnlyList<string> WeightFiles => _readers.Select(r => r.Path).ToList();

    /// <summary>Every tensor name: the single file's header order, or the index's <c>weight_map</c> order.</summary>
    public IReadOnlyList<string> TensorNames => _names;

    /// <summary>
    /// The adapters the weight files record as merged into these weights (<see cref="MergedAdapterMetadata"/>; empty for
    /// a checkpoint that is not a merged export). <see cref="LoadInto"/> hands them to the model, so that
    /// <see cref="AdapterFiles.Load"/> refuses to apply one of them a second time.
    /// </summary>
    public IReadOnlyList<MergedAdapterRecord> MergedAdapters { get; }

    /// <summary>
    /// Opens the Hugging Face model directory <paramref name="directory"/> and validates config.json, the index (if
    /// sharded), every shard's header and every index entry. <see cref="WeightsFileName"/> is preferred when both it and
    /// an index exist, as transformers does.
    /// </summary>
    /// <param name="directory">A local directory.</param>
    /// <returns>The open checkpoint; dispose it to close the files.</returns>
    /// <exception cref="CheckpointFormatException">Anything missing or malformed; the message names the file and tensor.</exception>
    public static HfCheckpoint Open(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var dir = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir))
        {
            throw new CheckpointFormatException(dir, "the directory does not exist");
        }
        var config = HfConfig.Load(Path.Combine(dir, HfConfig.FileName));

        var single = Path.Combine(dir, WeightsFileName);
        var index = Path.Combine(dir, IndexFileName);
        if (File.Exists(single))
        {
            var reader = OpenWeights(single, null);
            try
            {
                return new HfCheckpoint(dir, config, false, [reader], reader.Tensors.ToDictionary(t => t.Name, _ => reader, StringComparer.Ordinal),
                    reader.Tensors.Select(t => t.Name).ToList());
            }
            catch
            {
                reader.Dispose();
                throw;
            }
        }
        if (File.Exists(index))
        {
            return OpenSharded(dir, config, index);
        }
        var hint = File.Exists(Path.Combine(dir, "pytorch_model.bin")) || File.Exists(Path.Combine(dir, "pytorch_model.bin.index.json"))
            ? " (pytorch_model.bin is a pickle file, which is not read: convert it to safetensors)"
            : string.Empty;
        throw new CheckpointFormatException(dir, $"the directory has neither {WeightsFileName} nor {IndexFileName}{hint}");
    }

    /// <summary>Opens <paramref name="directory"/>, loads it into <paramref name="model"/> and closes it.</summary>
    /// <param name="model">The model to fill.</param>
    /// <param name="directory">A Hugging Face model directory.</param>
    /// <param name="options">Name mapping, strictness, dtype and tie handling; <see langword="null"/> for <see cref="CheckpointLoadOptions.Default"/>.</param>
    /// <returns>What was loaded, missing, unexpected or skipped.</returns>
    /// <exception cref="CheckpointFormatException">The directory is malformed (the model is unchanged).</exception>
    /// <exception cref="CheckpointMismatchException">Strict loading found problems (the model is unchanged).</exception>
    public static CheckpointLoadReport Load(nn.Module model, string directory, CheckpointLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var checkpoint = Open(directory);
        return checkpoint.LoadInto(model, options);
    }

    /// <summary>Whether the checkpoint has a tensor called <paramref name="name"/>.</summary>
    /// <param name="name">A checkpoint tensor name.</param>
    /// <returns><see langword="true"/> when it does.</returns>
    public bool Contains(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _byTensor.ContainsKey(name);
    }

    /// <summary>The header entry (dtype, shape) of tensor <paramref name="name"/>.</summary>
    /// <param name="name">A checkpoint tensor name.</param>
    /// <returns>The entry.</returns>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    public SafetensorsTensorInfo GetInfo(string name) => ReaderOf(name).GetInfo(name);

    /// <summary>The full path of the file that holds tensor <paramref name="name"/>.</summary>
    /// <param name="name">A checkpoint tensor name.</param>
    /// <returns>The path.</returns>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    public string GetFile(string name) => ReaderOf(name).Path;

    /// <summary>Reads tensor <paramref name="name"/> into a new CPU tensor with the file's dtype and shape.</summary>
    /// <param name="name">A checkpoint tensor name.</param>
    /// <returns>A tensor the caller owns.</returns>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    public Tensor ReadTensor(string name) => ReaderOf(name).ReadTensor(name);

    /// <summary>Closes the weight files.</summary>
    public void Dispose()
    {
        foreach (var reader in _readers) reader.Dispose();
        _readers.Clear();
    }

    private SafetensorsReader ReaderOf(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ObjectDisposedException.ThrowIf(_readers.Count == 0, this);
        return _byTensor.TryGetValue(name, out var reader)
            ? reader
            : throw new KeyNotFoundException($"Tensor '{name}' is not in checkpoint {Directory}.");
    }

    private static HfCheckpoint OpenSharded(string dir, HfConfig config, string indexPath)
    {
        // Duplicate keys (a tensor mapped to two shards), invalid UTF-8, oversized files and non-regular files are
        // refused by the reader.
        var obj = JsonFile.ReadObject(indexPath, JsonFileKind.ShardIndex);
        if (!obj.TryGetPropertyValue("weight_map", out var mapNode) || mapNode is not JsonObject map)
        {
            throw new CheckpointFormatException(indexPath, "weight_map", "expected a JSON object with a \"weight_map\" object (tensor name to shard file)");
        }
        if (map.Count == 0)
        {
            throw new CheckpointFormatException(indexPath, "\"weight_map\" is empty");
        }

        var names = new List<string>(map.Count);
        var byShard = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var shardOrder = new List<string>();
        foreach (var (name, value) in map)
        {
            if (value is not JsonValue v || !v.TryGetValue<string>(out var file) || string.IsNullOrEmpty(file))
            {
                throw new CheckpointFormatException(indexPath, $"\"weight_map\" entry for tensor '{name}' must be a shard file name, not {value?.ToJsonString() ?? "null"}");
            }
            if (Path.IsPathRooted(file) || file.Contains('/', StringComparison.Ordinal) || file.Contains('\\', StringComparison.Ordinal) || file is "." or "..")
            {
                throw new CheckpointFormatException(indexPath, $"\"weight_map\" entry for tensor '{name}' names '{file}', which is not a file name inside the checkpoint directory");
            }
            if (!byShard.TryGetValue(file, out var list))
            {
                byShard.Add(file, list = []);
                shardOrder.Add(file);
            }
            list.Add(name);
            names.Add(name);
        }

        var readers = new List<SafetensorsReader>();
        try
        {
            var byTensor = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
            foreach (var file in shardOrder)
            {
                var path = Path.Combine(dir, file);
                var tensors = byShard[file];
                if (!File.Exists(path))
                {
                    throw new CheckpointFormatException(path,
                        $"the shard does not exist; {IndexFileName} maps {tensors.Count} tensor(s) to it ({Preview(tensors)})");
                }
                var reader = OpenWeights(path, indexPath);
                readers.Add(reader);
                foreach (var name in tensors)
                {
                    if (!reader.Contains(name))
                    {
                        throw new CheckpointFormatException(path, $"{IndexFileName} maps tensor '{name}' to this shard, but the shard has no such tensor");
                    }
                    byTensor.Add(name, reader);
                }
            }
            return new HfCheckpoint(dir, config, true, readers, byTensor, names);
        }
        catch
        {
            foreach (var reader in readers) reader.Dispose();
            throw;
        }
    }

    private static SafetensorsReader OpenWeights(string path, string? indexPath)
    {
        try
        {
            return SafetensorsFile.Open(path);
        }
        catch (SafetensorsFormatException e)
        {
            throw new CheckpointFormatException(path, e.Problem, e);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            var listed = indexPath is null ? string.Empty : $" (listed in {indexPath})";
            throw new CheckpointFormatException(path, $"the file does not exist{listed}", e);
        }
    }

    private static IReadOnlyList<MergedAdapterRecord> ReadMergedAdapters(SafetensorsReader reader)
    {
        try
        {
            return MergedAdapterMetadata.Read(reader);
        }
        catch (SafetensorsFormatException e)
        {
            throw new CheckpointFormatException(reader.Path, e.Field, e.Problem, e);
        }
    }

    private static string Preview(IReadOnlyList<string> names)
        => names.Count <= 5 ? string.Join(", ", names) : $"{string.Join(", ", names.Take(5))}, ... {names.Count - 5} more";
}
