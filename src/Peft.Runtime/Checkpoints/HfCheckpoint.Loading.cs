using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Checkpoints;

/// <summary>Loading a checkpoint into a model: the plan (names, shapes, ties, dtypes), the finite-value check, the copy.</summary>
public sealed partial class HfCheckpoint
{
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
}
