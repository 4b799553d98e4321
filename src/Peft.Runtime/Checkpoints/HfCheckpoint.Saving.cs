using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Checkpoints;

/// <summary>Saving a model as a checkpoint: one file or shards with their index, dtype conversion, stale-file removal.</summary>
public sealed partial class HfCheckpoint
{
    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="directory"/> in the Hugging Face layout: config.json, and
    /// <see cref="WeightsFileName"/> or shards <c>model-00001-of-0000N.safetensors</c> with <see cref="IndexFileName"/>
    /// (<c>metadata.total_size</c>, sorted <c>weight_map</c>). Adapter parameters are left out: to export a fine-tuned model,
    /// call <c>model.Merge()</c> first (the merged base weights are written as they are, and every shard's metadata records
    /// the merged adapters, <see cref="MergedAdapterMetadata"/>, so loading one of them onto the export is refused).
    /// </summary>
    /// <param name="model">The model (its state dict without adapter parameters is written).</param>
    /// <param name="directory">The destination; created if needed. Other files in it (a tokenizer, say) are kept.</param>
    /// <param name="config">Written as config.json, with <c>torch_dtype</c> set to the written floating-point dtype; not modified.</param>
    /// <param name="options">Shard size, dtype, name mapping and ties; <see langword="null"/> for <see cref="CheckpointSaveOptions.Default"/>.</param>
    /// <remarks>
    /// Each file is written to a temporary name and renamed. The single file or the index is written after the shards
    /// and is what makes the new weights visible; weight files of an earlier save that the new layout does not use are
    /// deleted afterwards, and config.json is written last.
    /// </remarks>
    /// <exception cref="ArgumentException">
    /// An unsupported <see cref="CheckpointSaveOptions.DType"/>, a shard size below 1, two model names mapped to one
    /// checkpoint name, or tied embeddings whose values differ. Nothing is written.
    /// </exception>
    public static void Save(nn.Module model, string directory, HfConfig config, CheckpointSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(config);
        options ??= CheckpointSaveOptions.Default;
        if (options.MaxShardSizeBytes < 1)
        {
            throw new ArgumentException($"MaxShardSizeBytes must be at least 1, not {options.MaxShardSizeBytes}.", nameof(options));
        }
        ScalarType? floatType = null;
        if (options.DType is { } dtype)
        {
            if (dtype is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
            {
                throw new ArgumentException($"DType must be F32, F16 or BF16, not {dtype}.", nameof(options));
            }
            floatType = dtype.ToScalarType();
        }

        var state = BaseStateDict(model);
        bool tie = options.TieWordEmbeddings ?? config.TiesWordEmbeddings;
        string? omitted = null;
        if (tie)
        {
            var byName = state.ToDictionary(e => e.Name, e => e.Tensor, StringComparer.Ordinal);
            string? input = options.InputEmbeddingName ?? InputEmbeddingCandidates.FirstOrDefault(byName.ContainsKey);
            if (byName.TryGetValue(options.OutputEmbeddingName, out var output) && input is not null && input != options.OutputEmbeddingName
                && byName.TryGetValue(input, out var inputTensor))
            {
                if (!ValuesEqual(output, inputTensor))
                {
                    throw new ArgumentException(
                        $"The config ties word embeddings, but {options.OutputEmbeddingName} differs from {input}: Hugging Face would load {input} into both. Set tie_word_embeddings to false in the config (or TieWordEmbeddings = false) to save both. Nothing was written.",
                        nameof(config));
                }
                omitted = options.OutputEmbeddingName;
            }
        }

        var entries = new List<(string Name, Tensor Tensor, ScalarType DType, long Bytes, bool Transpose)>();
        var modelNameOf = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in state)
        {
            if (name == omitted) continue;
            var mapped = options.MapName(name);
            if (mapped is null) continue;
            if (!modelNameOf.TryAdd(mapped, name))
            {
                throw new ArgumentException($"Model names {modelNameOf[mapped]} and {name} both map to checkpoint name {mapped}. Nothing was written.", nameof(options));
            }
            var outType = floatType is not null && IsFloat(tensor.dtype) ? floatType.Value : tensor.dtype;
            if (!outType.TryGetSafetensorsDType(out var stType))
            {
                throw new ArgumentException($"Tensor {name} has dtype {outType}, which safetensors cannot store. Nothing was written.", nameof(model));
            }
            bool transpose = options.TransposedInCheckpoint?.Invoke(name) ?? false;
            if (transpose && tensor.dim() != 2)
            {
                throw new ArgumentException($"Tensor {name} is marked as stored transposed but has {tensor.dim()} dimension(s), not 2. Nothing was written.", nameof(options));
            }
            entries.Add((mapped, tensor, outType, checked(tensor.numel() * stType.GetElementSize()), transpose));
        }

        // Greedy sharding in state-dict order, as transformers' split_torch_state_dict_into_shards does for one device.
        var shards = new List<List<int>>();
        long current = 0;
        for (int i = 0; i < entries.Count; i++)
        {
            if (shards.Count == 0 || (current + entries[i].Bytes > options.MaxShardSizeBytes && shards[^1].Count > 0))
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add(i);
            current += entries[i].Bytes;
        }

        // A merged model records what it contains, so loading one of those adapters on top of it is refused later.
        var metadata = MergedAdapterMetadata.WithRecords(s_safetensorsMetadata, MergedAdapterMetadata.Of(model));
        var dir = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(dir);
        var written = new HashSet<string>(StringComparer.Ordinal);
        if (shards.Count <= 1)
        {
            WriteShard(Path.Combine(dir, WeightsFileName), entries, shards.Count == 0 ? [] : shards[0], metadata);
            written.Add(WeightsFileName);
        }
        else
        {
            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int s = 0; s < shards.Count; s++)
            {
                var file = ShardName(s + 1, shards.Count);
                WriteShard(Path.Combine(dir, file), entries, shards[s], metadata);
                written.Add(file);
                foreach (var i in shards[s]) weightMap.Add(entries[i].Name, file);
            }
            var index = new JsonObject
            {
                ["metadata"] = new JsonObject { ["total_size"] = entries.Sum(e => e.Bytes) },
                ["weight_map"] = new JsonObject(weightMap.Select(p => new KeyValuePair<string, JsonNode?>(p.Key, p.Value))),
            };
            AtomicFile.WriteAllText(Path.Combine(dir, IndexFileName),
                index.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 2 }) + "\n");
            written.Add(IndexFileName);
        }
        RemoveStaleWeights(dir, written);

        var outConfig = config.Clone();
        var floatTypes = entries.Select(e => e.DType).Where(IsFloat).Distinct().ToList();
        if (floatTypes.Count == 1)
        {
            outConfig.TorchDType = HfConfig.TorchDTypeName(floatTypes[0]);
        }
        outConfig.Save(Path.Combine(dir, HfConfig.FileName));
    }

    /// <summary>The name of shard <paramref name="number"/> (1-based) of <paramref name="count"/>: <c>model-00001-of-00003.safetensors</c>.</summary>
    /// <param name="number">The 1-based shard number.</param>
    /// <param name="count">The number of shards.</param>
    /// <returns>The file name.</returns>
    public static string ShardName(int number, int count)
        => string.Create(CultureInfo.InvariantCulture, $"model-{number:D5}-of-{count:D5}.safetensors");

    private static bool IsFloat(ScalarType dtype) => dtype is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64;

    private static void WriteShard(string path, List<(string Name, Tensor Tensor, ScalarType DType, long Bytes, bool Transpose)> entries, List<int> indices,
        IReadOnlyDictionary<string, string> metadata)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>(indices.Count);
        try
        {
            foreach (var i in indices)
            {
                var (name, tensor, dtype, _, transpose) = entries[i];
                var detached = transpose ? TransposeAndDispose(tensor.detach()) : tensor.detach();
                tensors.Add(new(name, detached.dtype == dtype ? detached : ConvertAndDispose(detached, dtype)));
            }
            SafetensorsFile.Write(path, tensors, metadata);
        }
        finally
        {
            foreach (var pair in tensors) pair.Value.Dispose();
        }
    }

    private static Tensor TransposeAndDispose(Tensor tensor)
    {
        using (tensor)
        {
            return tensor.t().contiguous();
        }
    }

    private static Tensor ConvertAndDispose(Tensor tensor, ScalarType dtype)
    {
        using (tensor)
        {
            return tensor.to(dtype);
        }
    }

    private static void RemoveStaleWeights(string dir, HashSet<string> keep)
    {
        foreach (var path in System.IO.Directory.EnumerateFiles(dir))
        {
            var file = Path.GetFileName(path);
            if (keep.Contains(file)) continue;
            if (file == WeightsFileName || file == IndexFileName || IsShardName(file))
            {
                AtomicFile.TryDelete(path);
            }
        }
    }

    private static bool IsShardName(string file)
        => System.Text.RegularExpressions.Regex.IsMatch(file, @"^model-\d{5}-of-\d{5}\.safetensors$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);
}
