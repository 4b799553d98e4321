using Peft.Serialization;
using ScalarType = TorchSharp.torch.ScalarType;
using Tensor = TorchSharp.torch.Tensor;

namespace Peft.Cli;

/// <summary>The tensors of one adapted module of a PEFT adapter file, by PEFT's tensor name (<c>lora_A.weight</c>, <c>lokr_w1</c>, ...).</summary>
/// <param name="ModulePath">The module path inside the base model (the key without <c>base_model.model.</c> and the tensor name).</param>
/// <param name="Tensors">PEFT tensor name to full key in the file.</param>
internal sealed record AdaptedModule(string ModulePath, IReadOnlyDictionary<string, string> Tensors);

/// <summary>
/// A module saved whole in the adapter file (PEFT's <c>modules_to_save</c>, e.g. a classification head): its tensors
/// replace the base model's.
/// </summary>
/// <param name="ModulePath">The module path inside the base model.</param>
/// <param name="Tensors">The tensor's name inside the module (<c>weight</c>, <c>bias</c>, ...) to its full key in the file.</param>
internal sealed record SavedModule(string ModulePath, IReadOnlyDictionary<string, string> Tensors);

/// <summary>An adapter directory (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>) read without a model.</summary>
internal static class AdapterDirectory
{
    /// <summary>Whether <paramref name="directory"/> holds an adapter config.</summary>
    public static bool IsAdapter(string directory) => File.Exists(Path.Combine(directory, AdapterFiles.ConfigFileName));

    /// <summary>
    /// Resolves <paramref name="directory"/> and an optional adapter name to the directory holding the adapter: PEFT
    /// saves a named adapter into the subdirectory named after it (the hosting service writes <c>adapters/NAME</c>).
    /// </summary>
    public static string Resolve(string directory, string? adapterName)
    {
        if (!Directory.Exists(directory))
        {
            throw CliException.Usage($"{directory}: the adapter directory does not exist.");
        }

        if (!string.IsNullOrEmpty(adapterName))
        {
            string named = Path.Combine(directory, adapterName);
            if (IsAdapter(named))
            {
                return named;
            }

            if (adapterName == AdapterNames.Default && IsAdapter(directory))
            {
                return directory;
            }

            var available = Directory.EnumerateDirectories(directory).Where(IsAdapter).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal).ToList();
            throw CliException.Usage($"{directory}: no adapter named '{adapterName}' (expected {Path.Combine(named, AdapterFiles.ConfigFileName)})"
                + (available.Count > 0 ? $"; adapters here: {string.Join(", ", available)}." : "."));
        }

        if (!IsAdapter(directory))
        {
            var available = Directory.EnumerateDirectories(directory).Where(IsAdapter).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal).ToList();
            throw CliException.Usage($"{directory}: not an adapter directory (no {AdapterFiles.ConfigFileName})"
                + (available.Count > 0 ? $"; it holds named adapters, pick one with --adapter-name: {string.Join(", ", available)}." : "."));
        }

        return directory;
    }

    /// <summary>Reads the config and finds the registered method that reads it (<see cref="PeftMethods.ForConfig"/>).</summary>
    public static (AdapterConfig Config, PeftMethod Method) ReadConfig(string directory)
    {
        string path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        if (BottleneckAdapters.IsBottleneckDirectory(directory))
        {
            throw CliException.Failure(
                $"{path}: a bottleneck adapter (peft_type {BottleneckConfig.PeftType}: Houlsby, Pfeiffer, parallel or Compacter) is a module inserted after a " +
                "sub-layer with a non-linearity, so it cannot be merged into the base weights; `peft inspect` shows it, and LoadBottleneckAdapters loads it into a model.");
        }

        var config = AdapterConfig.Read(path);
        try
        {
            return (config, PeftMethods.ForConfig(config));
        }
        catch (AdapterFormatException ex)
        {
            throw CliException.Failure(ex.Message);
        }
    }

    /// <summary>The path of the weights file; fails when it is missing.</summary>
    public static string WeightsPath(string directory)
    {
        string path = Path.Combine(directory, AdapterFiles.WeightsFileName);
        if (!File.Exists(path))
        {
            throw CliException.Failure($"{path}: the adapter weights file is missing ({Path.Combine(directory, AdapterFiles.ConfigFileName)} has no {AdapterFiles.WeightsFileName}; PEFT's pickle format adapter_model.bin is not supported).");
        }

        return path;
    }

    /// <summary>
    /// The prefix of <c>modules_to_save</c> keys: PEFT's path of the base model inside its PeftModel
    /// (<c>base_model.model.</c>, or <c>base_model.</c> for prompt learning, whose PeftModel holds the base model directly).
    /// </summary>
    public static string SavedModulePrefix(PeftMethod method) => method.IsPromptLearning ? "base_model." : AdapterFiles.KeyPrefix;

    /// <summary>
    /// The <c>modules_to_save</c> tensors of the file, grouped by module: a key <c>{prefix}{module}.{tensor}</c> belongs
    /// to the outermost module whose PeftModel name (<c>{prefix}{module}</c>) ends with one of the config's
    /// <c>modules_to_save</c> names (PEFT's plain suffix match). LoRA/LoKr tensor keys are never taken as module tensors.
    /// </summary>
    public static List<SavedModule> SavedModules(SafetensorsReader reader, AdapterConfig config, PeftMethod method)
    {
        var modules = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var info in reader.Tensors)
        {
            if (SplitSaved(info.Name, config, method) is not var (module, tensor)) continue;
            if (!modules.TryGetValue(module, out var tensors))
            {
                tensors = new Dictionary<string, string>(StringComparer.Ordinal);
                modules.Add(module, tensors);
                order.Add(module);
            }

            tensors[tensor] = info.Name;
        }

        return order.Select(m => new SavedModule(m, modules[m])).ToList();
    }

    private static (string Module, string Tensor)? SplitSaved(string key, AdapterConfig config, PeftMethod method)
    {
        string prefix = SavedModulePrefix(method);
        if (config.ModulesToSave.Count == 0 || !key.StartsWith(prefix, StringComparison.Ordinal) || IsAdapterTensor(key, method)) return null;
        string rest = key[prefix.Length..];
        for (int dot = rest.IndexOf('.'); dot > 0; dot = rest.IndexOf('.', dot + 1))
        {
            string module = rest[..dot];
            if (config.ModulesToSave.Any(n => n.Length > 0 && (prefix + module).EndsWith(n, StringComparison.Ordinal))) return (module, rest[(dot + 1)..]);
        }

        return null;
    }

    /// <summary>Whether <paramref name="key"/> is one of the method's model-level tensors (<c>base_model.vera_A</c>, ...).</summary>
    public static bool IsSharedTensor(string key, PeftMethod method)
        => method.SharedTensorNames.Any(n => key == SharedAdapterTensors.KeyPrefix + n);

    /// <summary>The method's model-level tensors the file holds, by PEFT name (<c>vera_A</c>), read in <paramref name="dtype"/>.</summary>
    public static Dictionary<string, Tensor> SharedTensors(SafetensorsReader reader, PeftMethod method, ScalarType dtype)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var name in method.SharedTensorNames)
        {
            string key = SharedAdapterTensors.KeyPrefix + name;
            if (!reader.Contains(key)) continue;
            using var raw = reader.ReadTensor(key);
            result[name] = raw.to(dtype, copy: true);
        }

        return result;
    }

    private static bool IsAdapterTensor(string key, PeftMethod method)
        => method.IsPromptLearning ? method.TensorNames.Contains(key, StringComparer.Ordinal) : method.TensorNames.Any(n => key.EndsWith("." + n, StringComparison.Ordinal));

    /// <summary>
    /// Groups the tensor keys of an adapter file with target modules by module path: every key must be
    /// <c>base_model.model.{module}.{tensor}</c> with one of the method's tensor names (<see cref="PeftMethod.TensorNames"/>;
    /// the longest that fits), or a tensor of a <c>modules_to_save</c> module (see <see cref="SavedModules"/>, not returned
    /// here). Whether a module has exactly the tensors its adapter needs is checked when the adapter is built from them.
    /// </summary>
    public static List<AdaptedModule> Modules(SafetensorsReader reader, AdapterConfig config, PeftMethod method)
    {
        if (method.IsPromptLearning) return new List<AdaptedModule>();
        var names = method.TensorNames.OrderByDescending(n => n.Length).ToList();
        var modules = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var info in reader.Tensors)
        {
            string key = info.Name;
            if (SplitSaved(key, config, method) is not null || IsSharedTensor(key, method)) continue;
            string? tensorName = key.StartsWith(AdapterFiles.KeyPrefix, StringComparison.Ordinal)
                ? names.FirstOrDefault(n => key.EndsWith("." + n, StringComparison.Ordinal) && key.Length > AdapterFiles.KeyPrefix.Length + n.Length + 1)
                : null;
            if (tensorName is null)
            {
                throw CliException.Failure($"{reader.Path}: tensor '{key}' is not a {method.Name} adapter tensor (expected {AdapterFiles.KeyPrefix}<module>.{{{string.Join("|", method.TensorNames)}}})"
                    + (config.ModulesToSave.Count > 0 ? $" nor a tensor of the modules_to_save modules ({string.Join(", ", config.ModulesToSave)})." : " and the config lists no modules_to_save."));
            }

            string module = key.Substring(AdapterFiles.KeyPrefix.Length, key.Length - AdapterFiles.KeyPrefix.Length - tensorName.Length - 1);
            if (!modules.TryGetValue(module, out var tensors))
            {
                tensors = new Dictionary<string, string>(StringComparer.Ordinal);
                modules.Add(module, tensors);
                order.Add(module);
            }

            tensors[tensorName] = key;
        }

        return order.Select(m => new AdaptedModule(m, modules[m])).ToList();
    }
}
