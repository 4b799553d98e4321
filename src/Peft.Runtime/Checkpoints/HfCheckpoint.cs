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
public sealed class HfCheckpoint : IDisposable
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

    /// <summary>
    /// Copies the checkpoint into <paramref name="model"/>. The expected names are the model's state dict (parameters
    /// and persistent buffers) without adapter parameters (<see cref="PeftModel.AdapterParameters"/>), so an annotated
    /// model loads a plain base checkpoint. Every name, shape and tie is checked before anything is copied. After the copy
    /// the model remembers <see cref="MergedAdapters"/>, so <see cref="AdapterFiles.Load"/> refuses to load one of them on top.
    /// </summary>
    /// <param name="model">The model to fill.</param>
    /// <param name="options">Name mapping, strictness, dtype and tie handling; <see langword="null"/> for <see cref="CheckpointLoadOptions.Default"/>.</param>
    /// <returns>What was loaded and, when not strict, what was missing, unexpected, mis-shaped or doubly mapped.</returns>
    /// <exception cref="CheckpointMismatchException">Strict loading found problems; all are listed and the model is unchanged.</exception>
    /// <exception cref="InvalidOperationException">
    /// Adapters are merged into the base weights (call <c>Unmerge()</c> first), or <see cref="CheckpointLoadOptions.KeepCheckpointDType"/>
    /// is set and the checkpoint mixes floating-point dtypes. The model is unchanged.
    /// </exception>
    public CheckpointLoadReport LoadInto(nn.Module model, CheckpointLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ObjectDisposedException.ThrowIf(_readers.Count == 0, this);
        options ??= CheckpointLoadOptions.Default;

        var merged = model.AdaptedLayers().Where(l => l.Layer.IsMerged).Select(l => l.Path).ToList();
        if (merged.Count > 0)
        {
            throw new InvalidOperationException(
                $"Adapters are merged into the base weights of {string.Join(", ", merged)}; loading base weights now would make a later Unmerge() subtract the update from the new weights. Call model.Unmerge() first; nothing was loaded.");
        }

        var expected = BaseStateDict(model);
        var (planned, report) = Plan(expected.Select(e => (e.Name, e.Tensor.shape)).ToList(), options, null);
        if (options.Strict && !report.IsComplete)
        {
            throw new CheckpointMismatchException(Directory, DescribeProblems(report), report);
        }
        var plan = planned.Select(p => (ModelName: expected[p.Index].Name, p.CheckpointName, Target: expected[p.Index].Tensor, p.Transpose)).ToList();

        // Every value is read and checked before the model is touched, so a NaN or infinite weight leaves it unchanged.
        // Values are kept for the copy up to a memory budget; larger checkpoints are read a second time.
        var values = ReadFinite(plan.Select(p => p.CheckpointName));
        try
        {
            var result = Copy(model, options, expected, plan, values, report);
            MergedAdapterMetadata.Remember(model, Directory, MergedAdapters);
            return result;
        }
        finally
        {
            foreach (var value in values.Values) value.Dispose();
        }
    }

    private CheckpointLoadReport Copy(nn.Module model, CheckpointLoadOptions options, List<(string Name, Tensor Tensor)> expected,
        List<(string ModelName, string CheckpointName, Tensor Target, bool Transpose)> plan, Dictionary<string, Tensor> values, CheckpointLoadReport report)
    {
        if (options.KeepCheckpointDType)
        {
            var floatTypes = plan.Select(p => GetInfo(p.CheckpointName).DType.ToScalarType()).Where(IsFloat).Distinct().ToList();
            if (floatTypes.Count > 1)
            {
                throw new InvalidOperationException(
                    $"Checkpoint {Directory} mixes floating-point dtypes ({string.Join(", ", floatTypes)}), so KeepCheckpointDType cannot give the model one dtype; load without it. Nothing was loaded.");
            }
            if (floatTypes.Count == 1 && expected.Any(e => IsFloat(e.Tensor.dtype) && e.Tensor.dtype != floatTypes[0]))
            {
                model.to(floatTypes[0]);
                // Module.to replaces the parameter objects: look the targets up again.
                var converted = BaseStateDict(model).ToDictionary(e => e.Name, e => e.Tensor, StringComparer.Ordinal);
                plan = plan.Select(p => (p.ModelName, p.CheckpointName, converted[p.ModelName], p.Transpose)).ToList();
            }
        }

        using (no_grad())
        {
            foreach (var (_, checkpointName, target, transpose) in plan)
            {
                using var read = values.Remove(checkpointName, out var kept) ? kept : ReadTensor(checkpointName);
                using var transposed = transpose ? read.t() : null;    // Conv1D [in, out] -> Linear [out, in]
                var value = transposed ?? read;
                if (value.dtype == target.dtype && value.device == target.device)
                {
                    target.copy_(value);
                }
                else
                {
                    using var converted = value.to(target.dtype, target.device);
                    target.copy_(converted);
                }
            }
        }
        return report;
    }

    /// <summary>
    /// Checks, before a model is built from <see cref="Config"/>, that the model <paramref name="expected"/> describes would
    /// load from this checkpoint: the check <see cref="LoadInto"/> makes, on shapes computed from config.json instead of
    /// allocated tensors, so sizes that do not match the weights actually there (a <c>vocab_size</c> of 2e9 against a
    /// [32, 16] embedding, 100000 layers against 2) fail without allocating anything. Model families call it in
    /// <c>FromPretrained</c>.
    /// </summary>
    /// <param name="expected">The model's state dict (parameters and persistent buffers, no adapters) as config.json sizes it, in
    /// state-dict order; enumerated lazily and abandoned as soon as it outgrows the checkpoint.</param>
    /// <param name="options">The options the load will use; <see langword="null"/> for <see cref="CheckpointLoadOptions.Default"/>.</param>
    /// <exception cref="CheckpointMismatchException">Strict options, and the tensors would not fit (the same report and
    /// message as <see cref="LoadInto"/>, with the config.json keys behind each mismatched shape).</exception>
    /// <exception cref="CheckpointFormatException">The sizes in config.json describe a model with far more tensors than the
    /// checkpoint has, or (not strict) a model of which less than half would come from the checkpoint; names config.json and the keys.</exception>
    public void EnsureFits(IEnumerable<ExpectedTensor> expected, CheckpointLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ObjectDisposedException.ThrowIf(_readers.Count == 0, this);
        options ??= CheckpointLoadOptions.Default;
        string configPath = Config.SourcePath ?? Path.Combine(Directory, HfConfig.FileName);

        // A model with many more tensors than the checkpoint cannot load from it; stop before listing them all (a
        // num_hidden_layers of 2^31 would not fit in memory as a list).
        int limit = checked(2 * _names.Count + 16);
        var list = new List<ExpectedTensor>();
        foreach (var tensor in expected)
        {
            if (list.Count >= limit)
            {
                throw new CheckpointFormatException(configPath, tensor.ConfigFields.FirstOrDefault(),
                    $"the sizes in config.json ({string.Join(", ", tensor.ConfigFields.Select(f => f + " = " + Show(Config.Json[f])))}) describe a model with more than {limit} tensors (e.g. {tensor.Name}), but {Directory} holds {_names.Count}; nothing was allocated");
            }
            list.Add(tensor);
        }

        var (planned, report) = Plan(list.Select(e => (e.Name, e.Shape)).ToList(), options, list);
        if (options.Strict && !report.IsComplete)
        {
            throw new CheckpointMismatchException(Directory,
                DescribeProblems(report).Replace("nothing was loaded", $"no model was built (shapes from {configPath})", StringComparison.Ordinal), report);
        }

        // Not strict: what the checkpoint does not provide is allocated and left at its initial values; refuse when that
        // is most of the model, which means config.json does not describe these weights.
        var fromCheckpoint = new HashSet<int>(planned.Select(p => p.Index));
        double provided = 0, other = 0;
        ExpectedTensor? largest = null;
        for (int i = 0; i < list.Count; i++)
        {
            double count = list[i].Shape.Aggregate(1.0, (a, d) => a * d);
            if (fromCheckpoint.Contains(i))
            {
                provided += count;
            }
            else
            {
                other += count;
                if (largest is null || count > largest.Shape.Aggregate(1.0, (a, d) => a * d)) largest = list[i];
            }
        }
        if (other > provided && largest is not null)
        {
            throw new CheckpointFormatException(configPath, largest.ConfigFields.FirstOrDefault(),
                $"config.json describes a model of {provided + other:0} elements of which only {provided:0} come from {Directory} (e.g. {largest.Name} [{string.Join(", ", largest.Shape)}] from {string.Join(", ", largest.ConfigFields)} is not there); nothing was allocated");
        }
    }

    private static string Show(System.Text.Json.Nodes.JsonNode? node) => node is null ? "absent" : node.ToJsonString();

    /// <summary>
    /// Maps checkpoint names to the expected model names and checks shapes: the plan (expected index, checkpoint name,
    /// transpose) of everything that fits and the report of the rest. <paramref name="described"/>, when given, adds the
    /// config.json keys behind each mismatched expected shape.
    /// </summary>
    private (List<(int Index, string CheckpointName, bool Transpose)> Plan, CheckpointLoadReport Report) Plan(
        IReadOnlyList<(string Name, long[] Shape)> expected, CheckpointLoadOptions options, IReadOnlyList<ExpectedTensor>? described)
    {
        var expectedIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < expected.Count; i++) expectedIndex.TryAdd(expected[i].Name, i);

        // Checkpoint names -> model names.
        var sources = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var skipped = new List<string>();
        foreach (var name in _names)
        {
            var mapped = options.MapName(name);
            if (mapped is null)
            {
                skipped.Add(name);
                continue;
            }
            if (!sources.TryGetValue(mapped, out var list))
            {
                sources.Add(mapped, list = []);
            }
            list.Add(name);
        }

        bool tie = options.TieWordEmbeddings ?? Config.TiesWordEmbeddings;
        string? inputEmbedding = options.InputEmbeddingName ?? InputEmbeddingCandidates.FirstOrDefault(expectedIndex.ContainsKey);

        var plan = new List<(int Index, string CheckpointName, bool Transpose)>();
        var missing = new List<string>();
        var mismatched = new List<string>();
        var tied = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int index = 0; index < expected.Count; index++)
        {
            var (name, targetShape) = expected[index];
            string? source = null;
            if (sources.TryGetValue(name, out var list))
            {
                if (list.Count > 1) continue;   // reported under Duplicates
                source = list[0];
            }
            else if (tie && name == options.OutputEmbeddingName && inputEmbedding is not null && inputEmbedding != name
                && sources.TryGetValue(inputEmbedding, out var inputList) && inputList.Count == 1)
            {
                source = inputList[0];
                tied.Add(name, inputEmbedding);
            }

            if (source is null)
            {
                missing.Add(name);
                continue;
            }
            var shape = GetInfo(source).Shape;
            bool transpose = options.TransposedInCheckpoint?.Invoke(name) ?? false;
            var modelShape = transpose && shape.Length == 2 ? new[] { shape[1], shape[0] } : shape;
            if ((transpose && shape.Length != 2) || !modelShape.SequenceEqual(targetShape))
            {
                var label = tied.ContainsKey(name) ? $"{name} (tied to {inputEmbedding})" : name;
                var stored = transpose ? " (stored transposed, [in, out])" : string.Empty;
                var fields = described is null ? string.Empty : $" from config.json's {string.Join(", ", described[index].ConfigFields)}";
                mismatched.Add($"{label}: checkpoint [{string.Join(", ", shape)}]{stored}, model [{string.Join(", ", targetShape)}]{fields}");
                tied.Remove(name);
                continue;
            }
            plan.Add((index, source, transpose));
        }

        var unexpected = sources.Where(p => !expectedIndex.ContainsKey(p.Key)).SelectMany(p => p.Value)
            .OrderBy(n => n, StringComparer.Ordinal).ToList();
        var duplicates = sources.Where(p => p.Value.Count > 1 && expectedIndex.ContainsKey(p.Key))
            .Select(p => $"{p.Key}: from {string.Join(", ", p.Value)}").OrderBy(n => n, StringComparer.Ordinal).ToList();
        missing.Sort(StringComparer.Ordinal);
        mismatched.Sort(StringComparer.Ordinal);

        var report = new CheckpointLoadReport(plan.Select(p => expected[p.Index].Name).ToList(), missing, unexpected, mismatched, duplicates, skipped, tied);
        return (plan, report);
    }

    /// <summary>The most bytes of checked values <see cref="LoadInto"/> keeps between its check and its copy.</summary>
    private const long KeptValueBytes = 512L << 20;

    /// <summary>
    /// Reads each tensor and refuses NaN or infinite values, naming the tensor and its file; returns the values read
    /// while they fit <see cref="KeptValueBytes"/> (the caller owns them), the rest are read again for the copy.
    /// </summary>
    private Dictionary<string, Tensor> ReadFinite(IEnumerable<string> names)
    {
        var kept = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        long keptBytes = 0;
        try
        {
            foreach (var name in names.Distinct(StringComparer.Ordinal))
            {
                var value = ReadTensor(name);
                bool keep = false;
                try
                {
                    if (IsFloat(value.dtype))
                    {
                        using var finite = isfinite(value);
                        using var all = finite.all();
                        if (!all.item<bool>())
                        {
                            throw new CheckpointFormatException(GetFile(name), name,
                                $"tensor '{name}' holds NaN or infinite values; refusing to load it (nothing was loaded)");
                        }
                    }
                    long bytes = value.numel() * value.element_size();
                    if (keptBytes + bytes <= KeptValueBytes)
                    {
                        kept.Add(name, value);
                        keptBytes += bytes;
                        keep = true;
                    }
                }
                finally
                {
                    if (!keep) value.Dispose();
                }
            }
            return kept;
        }
        catch
        {
            foreach (var value in kept.Values) value.Dispose();
            throw;
        }
    }

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

    private static string DescribeProblems(CheckpointLoadReport report)
    {
        var message = new StringBuilder("The checkpoint does not fit the model; nothing was loaded.");
        if (report.Missing.Count > 0) message.Append("\n  missing: ").AppendJoin(", ", report.Missing);
        if (report.Unexpected.Count > 0) message.Append("\n  unexpected: ").AppendJoin(", ", report.Unexpected);
        if (report.ShapeMismatches.Count > 0) message.Append("\n  shape mismatches: ").AppendJoin("; ", report.ShapeMismatches);
        if (report.Duplicates.Count > 0) message.Append("\n  mapped more than once: ").AppendJoin("; ", report.Duplicates);
        return message.ToString();
    }

    /// <summary>The model's state dict (parameters and persistent buffers) without adapter parameters, in state-dict order.</summary>
    private static List<(string Name, Tensor Tensor)> BaseStateDict(nn.Module model)
    {
        var adapterParameters = new HashSet<object>(model.AdapterParameters(), ReferenceEqualityComparer.Instance);
        var adapterNames = new HashSet<string>(
            model.named_parameters().Where(p => adapterParameters.Contains(p.parameter)).Select(p => p.name), StringComparer.Ordinal);
        return model.state_dict().Where(p => !adapterNames.Contains(p.Key)).Select(p => (p.Key, p.Value)).ToList();
    }

    private static bool ValuesEqual(Tensor a, Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var scope = NewDisposeScope();
        var left = a.detach().cpu();
        var right = b.detach().cpu();
        return left.eq(right).all().item<bool>();
    }

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
