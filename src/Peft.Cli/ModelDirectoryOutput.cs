using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Checkpoints;
using static TorchSharp.torch;

namespace Peft.Cli;

/// <summary>
/// Writes a merged Hugging Face model directory in the layout of the base directory: the same weight files (a merge keeps
/// every tensor's dtype and shape, so each shard keeps its tensors and its size), the index with its metadata and
/// <c>weight_map</c>, and the base's other top-level files copied unchanged (config.json, tokenizer and generation files,
/// ...). Weight files in other formats (<c>pytorch_model.bin</c>, <c>*.pt</c>, <c>*.onnx</c>, ...) would still hold the
/// unmerged weights and are left out, as are subdirectories. Everything is written into a hidden sibling directory that
/// is renamed to the output path at the end, so the output appears complete or not at all.
/// </summary>
internal static class ModelDirectoryOutput
{
    /// <summary>File name endings of weights this tool does not merge (they would silently disagree with the merged ones).</summary>
    private static readonly string[] s_otherWeights =
    [
        ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".index.json",
    ];

    /// <summary>Checks that <paramref name="outputPath"/> can become the merged directory: absent, or an empty directory.</summary>
    /// <exception cref="CliException">It is a file or a directory with entries (exit code 2).</exception>
    public static void EnsureUsable(string outputPath)
    {
        string full = Path.GetFullPath(outputPath);
        if (File.Exists(full))
        {
            throw CliException.Usage($"{full}: --output is a file; the base is a model directory, so give a directory (new or empty) for the merged model.");
        }

        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
        {
            throw CliException.Usage($"{full}: --output is a directory that is not empty; give a new or empty directory for the merged model (it is written whole, and never over other files).");
        }
    }

    /// <summary>Writes the merged directory (see the class remarks) and returns <paramref name="result"/> with the files listed.</summary>
    public static MergeResult Write(BaseWeights baseFile, IReadOnlyDictionary<string, Tensor> updated, string outputPath, MergeResult result)
    {
        string output = Path.GetFullPath(outputPath).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        EnsureUsable(output);
        string parent = Path.GetDirectoryName(output) ?? throw CliException.Usage($"{outputPath}: --output names no directory inside a parent directory.");
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(output)}.peft-merge-{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(staging);
        try
        {
            var weightFiles = new List<string>();
            foreach (var shard in baseFile.Shards)
            {
                string name = Path.GetFileName(shard.Path);
                AdapterMerger.WriteShard(baseFile, shard, updated, Path.Combine(staging, name), result.MergedAdapters);
                weightFiles.Add(name);
            }

            if (baseFile.IsSharded)
            {
                WriteIndex(baseFile, Path.Combine(staging, HfCheckpoint.IndexFileName));
                weightFiles.Add(HfCheckpoint.IndexFileName);
            }

            var copied = new List<string>();
            var skipped = new List<string>();
            var written = new HashSet<string>(weightFiles, StringComparer.Ordinal);
            foreach (var entry in Directory.EnumerateFileSystemEntries(baseFile.Path).Order(StringComparer.Ordinal))
            {
                string name = Path.GetFileName(entry);
                if (Directory.Exists(entry))
                {
                    skipped.Add($"{name}/ (a subdirectory)");
                }
                else if (written.Contains(name) || (name.StartsWith('.') && name.EndsWith(".tmp", StringComparison.Ordinal)))
                {
                    // The merged weights replace it, or it is a leftover temporary file of an interrupted write.
                }
                else if (s_otherWeights.Any(e => name.EndsWith(e, StringComparison.OrdinalIgnoreCase)))
                {
                    skipped.Add($"{name} (weights or an index that were not merged)");
                }
                else
                {
                    CopyFlushed(entry, Path.Combine(staging, name));
                    copied.Add(name);
                }
            }

            // The output is empty or absent (checked again: something may have appeared meanwhile); the rename publishes it.
            EnsureUsable(output);
            if (Directory.Exists(output))
            {
                Directory.Delete(output);
            }

            Directory.Move(staging, output);
            return result with { WeightFiles = weightFiles, Copied = copied, Skipped = skipped };
        }
        catch
        {
            TryDelete(staging);
            throw;
        }
    }

    /// <summary>
    /// The merged index: the base index's <c>metadata</c> (other keys kept) with <c>total_size</c> recomputed, and its
    /// <c>weight_map</c> unchanged (the tensors stay in their shards).
    /// </summary>
    private static void WriteIndex(BaseWeights baseFile, string path)
    {
        var metadata = new JsonObject();
        string source = Path.Combine(baseFile.Path, HfCheckpoint.IndexFileName);
        if (JsonNode.Parse(File.ReadAllText(source)) is JsonObject index && index["metadata"] is JsonObject existing)
        {
            foreach (var (key, value) in existing)
            {
                metadata[key] = value?.DeepClone();
            }
        }

        metadata["total_size"] = baseFile.Names.Sum(n => baseFile.GetInfo(n).ByteLength);
        var weightMap = new JsonObject();
        foreach (var name in baseFile.Names)
        {
            weightMap[name] = Path.GetFileName(baseFile.ShardOf(name).Path);
        }

        var json = new JsonObject { ["metadata"] = metadata, ["weight_map"] = weightMap };
        WriteFlushed(path, Encoding.UTF8.GetBytes(json.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 2 }) + "\n"));
    }

    private static void CopyFlushed(string source, string destination)
    {
        try
        {
            using var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read);
            using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            input.CopyTo(output);
            output.Flush(flushToDisk: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw CliException.Failure($"{source}: cannot be copied into the merged model directory ({e.Message}); nothing was written.", e);
        }
    }

    private static void WriteFlushed(string path, byte[] bytes)
    {
        using var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        output.Write(bytes);
        output.Flush(flushToDisk: true);
    }

    private static void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
        catch (IOException)
        {
            // Best effort: the merge's own error matters more than a leftover staging directory.
        }
        catch (UnauthorizedAccessException)
        {
            // Same as above.
        }
    }
}
