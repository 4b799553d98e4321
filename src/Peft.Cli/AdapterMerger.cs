using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Cli;

/// <summary>One module merged by <see cref="AdapterMerger"/>.</summary>
/// <param name="WeightKey">The base tensor that was updated (<c>{module}.weight</c>).</param>
/// <param name="Shape">Its shape.</param>
/// <param name="DType">Its dtype (kept).</param>
/// <param name="Scaling">The scaling the update was multiplied by.</param>
public sealed record MergedModule(string WeightKey, long[] Shape, SafetensorsDType DType, double Scaling);

/// <summary>One base tensor replaced by <see cref="AdapterMerger"/> with a <c>modules_to_save</c> tensor of the adapter.</summary>
/// <param name="Key">The base tensor that was replaced (<c>{module}.weight</c>, <c>{module}.bias</c>, ...).</param>
/// <param name="Shape">Its shape.</param>
/// <param name="DType">Its dtype (kept: the adapter's values are converted to it).</param>
/// <param name="AdapterKey">The adapter tensor it was replaced with (<c>base_model.model.{module}.weight</c>).</param>
public sealed record ReplacedTensor(string Key, long[] Shape, SafetensorsDType DType, string AdapterKey);

/// <summary>What <see cref="AdapterMerger.Merge"/> changed.</summary>
/// <param name="Merged">The adapted modules whose weights got the update, in the adapter file's order.</param>
/// <param name="Replaced">The base tensors replaced by the adapter's <c>modules_to_save</c> copies.</param>
public sealed record MergeResult(IReadOnlyList<MergedModule> Merged, IReadOnlyList<ReplacedTensor> Replaced);

/// <summary>
/// Merges a PEFT LoRA or LoKr adapter into a base safetensors file without a model: for every adapted module path X,
/// <c>X.weight += ΔW</c>, where <c>ΔW = s·B·A</c> (LoRA, <c>s = alpha/r</c> or <c>alpha/√r</c> with <c>use_rslora</c>,
/// per-module r and alpha from <c>rank_pattern</c>/<c>alpha_pattern</c>) or <c>ΔW = (alpha/r)·kron(W1, W2)</c> (LoKr,
/// each factor full or the product of its <c>_a</c>/<c>_b</c> pair). The modules the adapter saved whole (PEFT's
/// <c>modules_to_save</c>, e.g. a classification head) replace the base's tensors of those modules, as PEFT's
/// <c>merge_and_unload</c> puts the trained copy in place of the original. Every other tensor and the metadata are copied
/// unchanged; dtypes are kept.
/// </summary>
public static class AdapterMerger
{
    /// <summary>Merges <paramref name="adapterDirectory"/> into <paramref name="basePath"/> and writes <paramref name="outputPath"/> atomically.</summary>
    /// <param name="basePath">The base weights (state-dict names, e.g. from <see cref="ModelWeights.Save"/> or a Hugging Face checkpoint).</param>
    /// <param name="adapterDirectory">The adapter directory (already resolved to the one adapter).</param>
    /// <param name="outputPath">The merged file; its directory is created. It may be <paramref name="basePath"/> itself.</param>
    /// <returns>The merged modules and the replaced tensors.</returns>
    /// <exception cref="CliException">The adapter is not mergeable, the base lacks an adapted weight or a saved module's
    /// tensor, the base has a tensor of a saved module that the adapter lacks, or a shape disagrees; nothing is written.</exception>
    public static MergeResult Merge(string basePath, string adapterDirectory, string outputPath)
    {
        var config = AdapterDirectory.ReadConfig(adapterDirectory);
        string configPath = Path.Combine(adapterDirectory, AdapterFiles.ConfigFileName);
        CheckMergeable(config, configPath);
        using var adapter = SafetensorsFile.Open(AdapterDirectory.WeightsPath(adapterDirectory));
        var modules = AdapterDirectory.Modules(adapter, config);
        var saved = AdapterDirectory.SavedModules(adapter, config);
        if (modules.Count == 0 && saved.Count == 0)
        {
            throw CliException.Failure($"{adapter.Path}: the adapter holds no tensors; nothing to merge.");
        }

        using var baseFile = SafetensorsFile.Open(basePath);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();

        // Every update is computed and checked before anything is written.
        var updated = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var merged = new List<MergedModule>();
        foreach (var module in modules)
        {
            string? weightKey = BaseWeightKey(baseFile, module.ModulePath);
            if (weightKey is null)
            {
                throw CliException.Failure($"{baseFile.Path}: the base has no tensor '{module.ModulePath}.weight' (nor that name without its leading segments) for the adapted module '{module.ModulePath}' of {adapter.Path}.");
            }

            var info = baseFile.GetInfo(weightKey);
            if (info.Shape.Length != 2 || !IsFloat(info.DType))
            {
                throw CliException.Failure($"{baseFile.Path}: '{weightKey}' is {info.DType} [{string.Join(", ", info.Shape)}]; an adapted linear weight must be a 2-d floating-point tensor.");
            }

            if (updated.ContainsKey(weightKey))
            {
                throw CliException.Failure($"{adapter.Path}: module '{module.ModulePath}' appears twice.");
            }

            var (delta, scaling) = config.PeftType == "LOKR"
                ? LoKrDelta(adapter, module, config, configPath)
                : LoRADelta(adapter, module, config, configPath);
            // fan_in_fan_out (GPT-2's Conv1D): the base weight is stored [in, out], so the update is added transposed,
            // as PEFT's merge does.
            if (config.FanInFanOut && config.PeftType == "LORA") delta = delta.t();
            if (!delta.shape.SequenceEqual(info.Shape))
            {
                throw CliException.Failure($"{adapter.Path}: the update of '{module.ModulePath}' has shape [{string.Join(", ", delta.shape)}] but the base tensor '{weightKey}' in {baseFile.Path} is [{string.Join(", ", info.Shape)}].");
            }

            var weight = baseFile.ReadTensor(weightKey);
            var compute = ComputeType(weight.dtype, delta.dtype);
            var result = weight.to(compute).add_(delta.to(compute));
            if (!torch.isfinite(result).all().item<bool>())
            {
                throw CliException.Failure($"{adapter.Path}: merging '{module.ModulePath}' gives NaN or infinite values in '{weightKey}'; nothing was written.");
            }

            updated[weightKey] = result.to(weight.dtype);
            merged.Add(new MergedModule(weightKey, info.Shape, info.DType, scaling));
        }

        var replaced = new List<ReplacedTensor>();
        foreach (var module in saved)
        {
            string modulePrefix = module.ModulePath + ".";
            var lacking = baseFile.Tensors.Select(t => t.Name)
                .Where(n => n.StartsWith(modulePrefix, StringComparison.Ordinal) && !module.Tensors.ContainsKey(n[modulePrefix.Length..]))
                .ToList();
            if (lacking.Count > 0)
            {
                throw CliException.Failure($"{adapter.Path}: the saved module '{module.ModulePath}' (modules_to_save) has no tensor for {string.Join(", ", lacking)} of {baseFile.Path}; a saved module replaces the whole base module.");
            }

            foreach (var (name, adapterKey) in module.Tensors)
            {
                string key = modulePrefix + name;
                if (!baseFile.Contains(key))
                {
                    throw CliException.Failure($"{baseFile.Path}: the base has no tensor '{key}' for '{adapterKey}' of the saved module '{module.ModulePath}' (modules_to_save) in {adapter.Path}.");
                }

                if (updated.ContainsKey(key))
                {
                    throw CliException.Failure($"{adapter.Path}: '{key}' is both adapted and part of the saved module '{module.ModulePath}' (modules_to_save); the merge would be ambiguous.");
                }

                var info = baseFile.GetInfo(key);
                var adapterInfo = adapter.GetInfo(adapterKey);
                if (!adapterInfo.Shape.SequenceEqual(info.Shape))
                {
                    throw CliException.Failure($"{adapter.Path}: '{adapterKey}' has shape [{string.Join(", ", adapterInfo.Shape)}] but the base tensor '{key}' in {baseFile.Path} is [{string.Join(", ", info.Shape)}].");
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

        var tensors = new List<KeyValuePair<string, Tensor>>(baseFile.Tensors.Count);
        foreach (var info in baseFile.Tensors)
        {
            tensors.Add(new(info.Name, updated.TryGetValue(info.Name, out var value) ? value : baseFile.ReadTensor(info.Name)));
        }

        string fullOutput = Path.GetFullPath(outputPath);
        Directory.CreateDirectory(Path.GetDirectoryName(fullOutput)!);
        var metadata = baseFile.Metadata.Count > 0 ? new Dictionary<string, string>(baseFile.Metadata) : null;
        SafetensorsFile.Write(fullOutput, tensors, metadata);
        return new MergeResult(merged, replaced);
    }

    /// <summary>
    /// The base tensor of an adapted module: <c>PATH.weight</c>, or, for a checkpoint saved from the inner model (GPT-2's
    /// <c>GPT2Model</c> writes <c>h.0.attn.c_attn.weight</c> where the adapter says <c>transformer.h.0.attn.c_attn</c>),
    /// the same name without its leading segments, longest first. Null when none is in the file.
    /// </summary>
    private static string? BaseWeightKey(SafetensorsReader baseFile, string modulePath)
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

    private static void CheckMergeable(AdapterConfig config, string configPath)
    {
        string? problem = config.PeftType switch
        {
            "PROMPT_TUNING" => "a prompt-tuning adapter adds virtual tokens, not a weight update; there is nothing to merge into the base weights",
            "LORA" when config.UseDora => "DoRA adapters (use_dora: true) are not supported",
            "LORA" when config.Bias != "none" => $"bias \"{config.Bias}\" is not supported (only \"none\")",
            "LORA" when config.LoraBias => "lora_bias: true is not supported",
            _ => null,
        };
        if (problem is not null)
        {
            throw CliException.Failure($"{configPath}: {problem}.");
        }
    }

    private static (Tensor Delta, double Scaling) LoRADelta(SafetensorsReader adapter, AdaptedModule module, AdapterConfig config, string configPath)
    {
        var a = ReadFloat(adapter, module.Tensors["lora_A.weight"]);
        var b = ReadFloat(adapter, module.Tensors["lora_B.weight"]);
        int r = config.RankFor(module.ModulePath);
        if (a.Dimensions != 2 || b.Dimensions != 2 || a.shape[0] != r || b.shape[1] != r)
        {
            throw CliException.Failure($"{adapter.Path}: '{module.Tensors["lora_A.weight"]}' is [{string.Join(", ", a.shape)}] and '{module.Tensors["lora_B.weight"]}' is [{string.Join(", ", b.shape)}]; {configPath} gives r = {r} for '{module.ModulePath}' (expected A [r, in], B [out, r]).");
        }

        double alpha = config.AlphaFor(module.ModulePath);
        double scaling = config.UseRsLora ? alpha / Math.Sqrt(r) : alpha / r;
        var delta = b.matmul(a);
        delta.mul_(scaling);
        return (delta, scaling);
    }

    private static (Tensor Delta, double Scaling) LoKrDelta(SafetensorsReader adapter, AdaptedModule module, AdapterConfig config, string configPath)
    {
        var w1 = Factor(adapter, module, "lokr_w1");
        var w2 = Factor(adapter, module, "lokr_w2");
        int r = config.RankFor(module.ModulePath);
        if (r <= 0)
        {
            throw CliException.Failure($"{configPath}: r must be positive for '{module.ModulePath}', found {r}.");
        }

        double scaling = config.AlphaFor(module.ModulePath) / r;
        var delta = torch.kron(w1, w2);
        delta.mul_(scaling);
        return (delta, scaling);
    }

    private static Tensor Factor(SafetensorsReader adapter, AdaptedModule module, string name)
    {
        if (module.Tensors.TryGetValue(name, out var full))
        {
            var w = ReadFloat(adapter, full);
            return w.Dimensions == 2 ? w : throw CliException.Failure($"{adapter.Path}: '{full}' is [{string.Join(", ", w.shape)}]; expected a 2-d factor.");
        }

        string aKey = module.Tensors[name + "_a"], bKey = module.Tensors[name + "_b"];
        var a = ReadFloat(adapter, aKey);
        var b = ReadFloat(adapter, bKey);
        if (a.Dimensions != 2 || b.Dimensions != 2 || a.shape[1] != b.shape[0])
        {
            throw CliException.Failure($"{adapter.Path}: '{aKey}' [{string.Join(", ", a.shape)}] and '{bKey}' [{string.Join(", ", b.shape)}] cannot be multiplied.");
        }

        return a.matmul(b);
    }

    private static Tensor ReadFloat(SafetensorsReader reader, string key)
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

        // Half-precision factors are multiplied in float32 (as a merge on CPU would upcast anyway).
        return t.dtype is ScalarType.Float16 or ScalarType.BFloat16 ? t.to(ScalarType.Float32) : t;
    }

    private static bool IsFloat(SafetensorsDType dtype) => dtype is SafetensorsDType.F64 or SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16;

    private static ScalarType ComputeType(ScalarType weight, ScalarType delta) =>
        weight == ScalarType.Float64 || delta == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
}
