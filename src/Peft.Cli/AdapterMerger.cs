using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Cli;

/// <summary>One module merged by <see cref="AdapterMerger"/>.</summary>
/// <param name="WeightKey">The base tensor that was updated (<c>{module}.weight</c>; its bias too where the method changes it).</param>
/// <param name="Shape">Its shape.</param>
/// <param name="DType">Its dtype (kept).</param>
/// <param name="Settings">The adapter's settings as the method describes them (r, alpha, scaling, ...).</param>
public sealed record MergedModule(string WeightKey, long[] Shape, SafetensorsDType DType, IReadOnlyList<(string Name, object? Value)> Settings)
{
    /// <summary>The scaling of a low-rank method's update, when it has one.</summary>
    public double? Scaling => Settings.Where(s => s.Name == "scaling").Select(s => s.Value as double?).FirstOrDefault();
}

/// <summary>One base tensor replaced by <see cref="AdapterMerger"/> with a <c>modules_to_save</c> tensor of the adapter.</summary>
/// <param name="Key">The base tensor that was replaced (<c>{module}.weight</c>, <c>{module}.bias</c>, ...).</param>
/// <param name="Shape">Its shape.</param>
/// <param name="DType">Its dtype (kept: the adapter's values are converted to it).</param>
/// <param name="AdapterKey">The adapter tensor it was replaced with (<c>base_model.model.{module}.weight</c>).</param>
public sealed record ReplacedTensor(string Key, long[] Shape, SafetensorsDType DType, string AdapterKey);

/// <summary>What <see cref="AdapterMerger.Merge"/> changed.</summary>
/// <param name="Merged">The adapted modules whose weights got the update, in the adapter file's order.</param>
/// <param name="Replaced">The base tensors replaced by the adapter's <c>modules_to_save</c> copies.</param>
public sealed record MergeResult(IReadOnlyList<MergedModule> Merged, IReadOnlyList<ReplacedTensor> Replaced)
{
    /// <summary>The weight files written (file names; one for a file, the single file or every shard and the index for a directory).</summary>
    public IReadOnlyList<string> WeightFiles { get; init; } = Array.Empty<string>();

    /// <summary>For a model directory: the other files copied unchanged into the output (config.json, tokenizer files, ...).</summary>
    public IReadOnlyList<string> Copied { get; init; } = Array.Empty<string>();

    /// <summary>For a model directory: the entries not copied, each with the reason (weights in another format, subdirectories).</summary>
    public IReadOnlyList<string> Skipped { get; init; } = Array.Empty<string>();

    /// <summary>The adapters the output records as merged into it (<see cref="MergedAdapterMetadata"/>): the base's, then this one.</summary>
    public IReadOnlyList<MergedAdapterRecord> MergedAdapters { get; init; } = Array.Empty<MergedAdapterRecord>();
}

/// <summary>
/// Merges a PEFT adapter into a base safetensors file, or a Hugging Face model directory (single file or shards), without a
/// model, through the same per-method math a model's merge runs: for every adapted module path X, the method's adapter is built from the file's tensors
/// (<see cref="StandaloneAdapter"/>, with the config's per-module settings such as <c>rank_pattern</c>) and merged into
/// <c>X.weight</c> (and <c>X.bias</c> where the method changes it) with <see cref="IMergeableAdapter.MergeInto"/>: LoRA adds
/// <c>s·B·A</c>, LoKr <c>(alpha/r)·kron(W1, W2)</c>, and so on. With <c>fan_in_fan_out</c> (Conv1D) the base weight is
/// merged through its transpose. The modules the adapter saved whole (PEFT's <c>modules_to_save</c>, e.g. a classification
/// head) replace the base's tensors of those modules, as PEFT's <c>merge_and_unload</c> puts the trained copy in place of the
/// original. Every other tensor and the metadata are copied unchanged; dtypes are kept. A model directory is written back
/// as a directory of the same layout: the same weight files (a shard holds the same tensors, so it has the same size) with
/// the index, config.json and the other files copied, weights in other formats left out.
/// </summary>
public static class AdapterMerger
{
    /// <summary>Merges <paramref name="adapterDirectory"/> into <paramref name="basePath"/> and writes <paramref name="outputPath"/> atomically.</summary>
    /// <param name="basePath">The base weights: a safetensors file (state-dict names, e.g. from <see cref="ModelWeights.Save"/>), or a
    /// Hugging Face model directory (config.json with <c>model.safetensors</c> or shards and their index).</param>
    /// <param name="adapterDirectory">The adapter directory (already resolved to the one adapter).</param>
    /// <param name="outputPath">For a file, the merged file; its directory is created, and it may be <paramref name="basePath"/>
    /// itself. For a model directory, the merged model directory, which must not exist or be empty; it appears complete
    /// or not at all (written as a hidden sibling, then renamed).</param>
    /// <param name="adapterName">The adapter's name, recorded in the output's metadata with its fingerprint.</param>
    /// <param name="allowAlreadyMerged">Merge even when the base records this adapter as merged already.</param>
    /// <returns>The merged modules, the replaced tensors and the files written, copied and skipped.</returns>
    /// <exception cref="CliException">The adapter is not mergeable, the base lacks an adapted weight or a saved module's
    /// tensor, the base has a tensor of a saved module that the adapter lacks, a shape disagrees, or (unless
    /// <paramref name="allowAlreadyMerged"/>) the base already contains the adapter; nothing is written.</exception>
    public static MergeResult Merge(string basePath, string adapterDirectory, string outputPath, string adapterName = AdapterNames.Default,
        bool allowAlreadyMerged = false)
    {
        string configPath = Path.Combine(adapterDirectory, AdapterFiles.ConfigFileName);
        if (PrefixTuningFile.IsPrefixTuning(adapterDirectory))
        {
            throw CliException.Failure($"{configPath}: prefix tuning adds key/value positions to every attention, not a weight update; there is nothing to merge into the base weights.");
        }

        if (AdaptionPrompts.IsAdaptionPrompt(adapterDirectory))
        {
            throw CliException.Failure($"{configPath}: an adaption prompt ({AdaptionPromptConfig.PeftType}) adds gated attention to its own tokens inside each attention " +
                "(a softmax that depends on every query), not a weight update; there is nothing to merge into the base weights. Load it with LoadAdaptionPrompt.");
        }

        var (config, method) = AdapterDirectory.ReadConfig(adapterDirectory);
        if (method.IsPromptLearning)
        {
            throw CliException.Failure($"{configPath}: a prompt-learning adapter ({method.Name}) adds virtual tokens, not a weight update; there is nothing to merge into the base weights.");
        }

        using var adapter = SafetensorsFile.Open(AdapterDirectory.WeightsPath(adapterDirectory));
        var modules = AdapterDirectory.Modules(adapter, config, method);
        var rewrite = BaseRewriteMetadata.Read(adapter.Metadata, adapter.Path);
        var saved = AdapterDirectory.SavedModules(adapter, config, method);
        if (modules.Count == 0 && saved.Count == 0)
        {
            throw CliException.Failure($"{adapter.Path}: the adapter holds no tensors; nothing to merge.");
        }

        using var baseFile = BaseWeights.Open(basePath);
        if (baseFile.IsDirectory)
        {
            ModelDirectoryOutput.EnsureUsable(outputPath);
        }

        // The output records what it contains (MergedAdapterMetadata), so the same adapter is never applied twice.
        var record = new MergedAdapterRecord(adapterName, method.PeftType, MergedAdapterMetadata.Fingerprint(adapter, method));
        if (baseFile.MergedAdapters.FirstOrDefault(r => r.Sha256 == record.Sha256) is { } already && !allowAlreadyMerged)
        {
            throw CliException.Failure(
                $"{baseFile.Describe}: the base already contains the adapter in {adapterDirectory} ({record.PeftType}, sha256 {record.Sha256[..12]}…): " +
                $"its metadata records it as merged (as adapter '{already.Name}'); merging it again would apply its update twice. " +
                "Use the unmerged base, or pass --allow-already-merged to merge it anyway. Nothing was written.");
        }

        var records = baseFile.MergedAdapters.Append(record).ToList();

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();

        // Every update is computed and checked before anything is written.
        var updated = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var merged = new List<MergedModule>();
        var shared = SharedTensors(method, config, adapter, baseFile, modules);
        foreach (var module in modules)
        {
            string? weightKey = BaseWeightKey(baseFile, module.ModulePath);
            if (weightKey is null)
            {
                throw CliException.Failure($"{baseFile.Describe}: the base has no tensor '{module.ModulePath}.weight' (nor that name without its leading segments) for the adapted module '{module.ModulePath}' of {adapter.Path}.");
            }

            var info = baseFile.GetInfo(weightKey);
            string weightFile = baseFile.ShardOf(weightKey).Path;
            if (!IsFloat(info.DType) || info.Shape.Length is < 1 or > 2)
            {
                throw CliException.Failure($"{weightFile}: '{weightKey}' is {info.DType} [{string.Join(", ", info.Shape)}]; an adapted layer's weight must be a 1-d (norm) or 2-d (linear) floating-point tensor.");
            }

            if (updated.ContainsKey(weightKey))
            {
                throw CliException.Failure($"{adapter.Path}: module '{module.ModulePath}' appears twice.");
            }

            string biasKey = weightKey[..^"weight".Length] + "bias";
            var weight = baseFile.ReadTensor(weightKey);
            var bias = baseFile.Contains(biasKey) ? baseFile.ReadTensor(biasKey) : null;
            var compute = ComputeType(weight.dtype);
            // Copies: .to() returns the same tensor when the dtype already matches, and the merge works in place.
            var w = weight.to(compute, copy: true);
            var b = bias?.to(compute, copy: true);
            // fan_in_fan_out (GPT-2's Conv1D): the base weight is stored [in, out]; the method's math runs on its [out, in]
            // transpose, a view, so the merge lands in the stored layout, as PEFT's merge does.
            var view = config.FanInFanOut && w.Dimensions == 2 ? w.t() : w;
            var kind = view.Dimensions == 2 ? PeftLayerKind.Linear : PeftLayerKind.Norm;
            if ((method.LayerKinds & kind) == 0)
            {
                throw CliException.Failure($"{weightFile}: '{weightKey}' is [{string.Join(", ", info.Shape)}], a {kind} layer's weight, but {method.Name} adapts {method.LayerKinds} layers.");
            }

            var layer = new PeftLayerInfo(kind, view.shape[^1], view.shape[0], b is not null, CPU, compute, module.ModulePath);
            var moduleTensors = module.Tensors.ToDictionary(t => t.Key, t => ReadFloat(adapter, t.Value, compute), StringComparer.Ordinal);
            PeftAdapter built;
            try
            {
                // PiSSA/OLoRA: the base must be the original one; the adapter derives the residual from it, as a model's load does.
                // CorDA: the residual came from calibration data, so the base must be the residual itself (plain LoRA's merge on it).
                if (method.ReadOptions(config, module.ModulePath).NeedsCalibration) BaseRewriteMetadata.EnsureResidual(rewrite, module.ModulePath, view, adapter.Path);
                else BaseRewriteMetadata.EnsureOriginal(rewrite, module.ModulePath, view, adapter.Path);
                built = StandaloneAdapter.FromTensors(method, config, module.ModulePath, layer, moduleTensors, adapter.Path, shared, new LayerParameters(view, b));
            }
            catch (AdapterFormatException ex)
            {
                throw CliException.Failure($"{ex.Message} (base tensor '{weightKey}' in {weightFile} is [{string.Join(", ", info.Shape)}])");
            }

            using (built)
            {
                if (built is not IMergeableAdapter mergeable)
                {
                    throw CliException.Failure($"{configPath}: {method.Name} adapters cannot be merged into the base weights.");
                }

                mergeable.MergeInto(new LayerParameters(view, b));
                if (!torch.isfinite(w).all().item<bool>() || (b is not null && !torch.isfinite(b).all().item<bool>()))
                {
                    throw CliException.Failure($"{adapter.Path}: merging '{module.ModulePath}' gives NaN or infinite values in '{weightKey}'; nothing was written.");
                }

                updated[weightKey] = w.to(weight.dtype);
                if (b is not null && bias is not null && !b.eq(bias.to(compute)).all().item<bool>()) // the method changed the bias (IA3)
                {
                    updated[biasKey] = b.to(bias.dtype);
                }

                merged.Add(new MergedModule(weightKey, info.Shape, info.DType, built.Config.Describe().ToList()));
            }
        }

        var replaced = new List<ReplacedTensor>();
        foreach (var module in saved)
        {
            string modulePrefix = module.ModulePath + ".";
            var lacking = baseFile.Names
                .Where(n => n.StartsWith(modulePrefix, StringComparison.Ordinal) && !module.Tensors.ContainsKey(n[modulePrefix.Length..]))
                .ToList();
            if (lacking.Count > 0)
            {
                throw CliException.Failure($"{adapter.Path}: the saved module '{module.ModulePath}' (modules_to_save) has no tensor for {string.Join(", ", lacking)} of {baseFile.Describe}; a saved module replaces the whole base module.");
            }

            foreach (var (name, adapterKey) in module.Tensors)
            {
                string key = modulePrefix + name;
                if (!baseFile.Contains(key))
                {
                    throw CliException.Failure($"{baseFile.Describe}: the base has no tensor '{key}' for '{adapterKey}' of the saved module '{module.ModulePath}' (modules_to_save) in {adapter.Path}.");
                }

                if (updated.ContainsKey(key))
                {
                    throw CliException.Failure($"{adapter.Path}: '{key}' is both adapted and part of the saved module '{module.ModulePath}' (modules_to_save); the merge would be ambiguous.");
                }

                var info = baseFile.GetInfo(key);
                var adapterInfo = adapter.GetInfo(adapterKey);
                if (!adapterInfo.Shape.SequenceEqual(info.Shape))
                {
                    throw CliException.Failure($"{adapter.Path}: '{adapterKey}' has shape [{string.Join(", ", adapterInfo.Shape)}] but the base tensor '{key}' in {baseFile.ShardOf(key).Path} is [{string.Join(", ", info.Shape)}].");
                }

                var value = adapter.ReadTensor(adapterKey);
                if (value.is_floating_point() && !torch.isfinite(value).all().item<bool>())
                {
                    throw CliException.Failure($"{adapter.Path}: '{adapterKey}' holds NaN or infinite values; nothing was written.");
                }

                var target = baseFile.ReadTensor(key);
                updated[key] = value.to(target.dtype);
                replaced.Add(new ReplacedTensor(key, info.Shape, info.DType, adapterKey));
            }
        }

        var result = new MergeResult(merged, replaced) { MergedAdapters = records };
        if (baseFile.IsDirectory)
        {
            return ModelDirectoryOutput.Write(baseFile, updated, outputPath, result);
        }

        string fullOutput = Path.GetFullPath(outputPath);
        Directory.CreateDirectory(Path.GetDirectoryName(fullOutput)!);
        WriteShard(baseFile, baseFile.Shards[0], updated, fullOutput, records);
        return result with { WeightFiles = [Path.GetFileName(fullOutput)] };
    }

    /// <summary>
    /// Writes one weight file of the base to <paramref name="path"/> (atomically): its tensors in its order, each the merged
    /// value where <paramref name="updated"/> has one for a tensor of this file, and its metadata with the merged adapters'
    /// <paramref name="records"/>. Only this file's unchanged tensors are read, one file at a time.
    /// </summary>
    internal static void WriteShard(BaseWeights baseFile, SafetensorsReader shard, IReadOnlyDictionary<string, Tensor> updated, string path,
        IReadOnlyList<MergedAdapterRecord> records)
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new List<KeyValuePair<string, Tensor>>(shard.Tensors.Count);
        foreach (var info in shard.Tensors)
        {
            bool mine = baseFile.Contains(info.Name) && ReferenceEquals(baseFile.ShardOf(info.Name), shard);
            tensors.Add(new(info.Name, mine && updated.TryGetValue(info.Name, out var value) ? value : shard.ReadTensor(info.Name)));
        }

        SafetensorsFile.Write(path, tensors, MergedAdapterMetadata.WithRecords(shard.Metadata, records));
    }

    /// <summary>
    /// The base tensor of an adapted module: <c>PATH.weight</c>, or, for a checkpoint saved from the inner model (GPT-2's
    /// <c>GPT2Model</c> writes <c>h.0.attn.c_attn.weight</c> where the adapter says <c>transformer.h.0.attn.c_attn</c>),
    /// the same name without its leading segments, longest first. Null when none is in the file.
    /// </summary>
    private static string? BaseWeightKey(BaseWeights baseFile, string modulePath)
    {
        string path = modulePath;
        while (true)
        {
            if (baseFile.Contains(path + ".weight")) return path + ".weight";
            int dot = path.IndexOf('.', StringComparison.Ordinal);
            if (dot < 0 || path.IndexOf('.', dot + 1) < 0) return null;   // keep at least two segments
            path = path.Substring(dot + 1);
        }
    }

    /// <summary>
    /// The adapter's model-level tensors (VeRA's projections) for a method that has them: the file's, or, when the file has
    /// none (<c>save_projection</c> false), generated from the config and the shapes of every adapted base weight, as a
    /// model's load does. Null for other methods.
    /// </summary>
    private static SharedAdapterTensors? SharedTensors(PeftMethod method, AdapterConfig config, SafetensorsReader adapter, BaseWeights baseFile,
        IReadOnlyList<AdaptedModule> modules)
    {
        if (method.SharedTensorNames.Count == 0) return null;
        var layers = new List<(string ModulePath, PeftLayerInfo Layer)>();
        foreach (var module in modules)
        {
            if (BaseWeightKey(baseFile, module.ModulePath) is not { } key) continue;   // reported by the merge loop
            var shape = baseFile.GetInfo(key).Shape;
            if (shape.Length != 2) continue;
            var (outFeatures, inFeatures) = config.FanInFanOut ? (shape[1], shape[0]) : (shape[0], shape[1]);
            layers.Add((module.ModulePath, new PeftLayerInfo(PeftLayerKind.Linear, inFeatures, outFeatures, false, CPU, ScalarType.Float32, module.ModulePath)));
        }

        try
        {
            var fileTensors = AdapterDirectory.SharedTensors(adapter, method, ScalarType.Float32);
            return StandaloneAdapter.SharedTensors(method, config, fileTensors, layers, adapter.Path);
        }
        catch (AdapterFormatException ex)
        {
            throw CliException.Failure(ex.Message);
        }
    }

    private static Tensor ReadFloat(SafetensorsReader reader, string key, ScalarType compute)
    {
        var info = reader.GetInfo(key);
        if (!IsFloat(info.DType))
        {
            throw CliException.Failure($"{reader.Path}: adapter tensor '{key}' is {info.DType}; expected a floating-point tensor.");
        }

        var t = reader.ReadTensor(key);
        if (!torch.isfinite(t).all().item<bool>())
        {
            throw CliException.Failure($"{reader.Path}: adapter tensor '{key}' holds NaN or infinite values.");
        }

        // The update is computed in float32 (float64 for a float64 base), as a merge on CPU would upcast half precision anyway.
        return t.to(compute);
    }

    private static bool IsFloat(SafetensorsDType dtype) => dtype is SafetensorsDType.F64 or SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16;

    private static ScalarType ComputeType(ScalarType weight) =>
        weight == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
}
