using Peft.Serialization;

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
    /// <summary>The tensor names PEFT writes per adapted linear layer, for the methods this tool understands.</summary>
    internal static readonly string[] LoRATensorNames = { "lora_A.weight", "lora_B.weight" };

    internal static readonly string[] LoKrTensorNames = { "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b" };

    /// <summary>The <c>peft_type</c> values this tool reads.</summary>
    internal static readonly string[] SupportedPeftTypes = { "LORA", "LOKR", "PROMPT_TUNING" };

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

    /// <summary>Reads the config and checks that its <c>peft_type</c> is one this tool understands.</summary>
    public static AdapterConfig ReadConfig(string directory)
    {
        string path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        var config = AdapterConfig.Read(path);
        if (!SupportedPeftTypes.Contains(config.PeftType, StringComparer.Ordinal))
        {
            throw CliException.Failure($"{path}: peft_type \"{config.PeftType}\" is not supported (supported: {string.Join(", ", SupportedPeftTypes)}).");
        }

        return config;
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
    public static string SavedModulePrefix(string peftType) => peftType == "PROMPT_TUNING" ? "base_model." : AdapterFiles.KeyPrefix;

    /// <summary>
    /// The <c>modules_to_save</c> tensors of the file, grouped by module: a key <c>{prefix}{module}.{tensor}</c> belongs
    /// to the outermost module whose PeftModel name (<c>{prefix}{module}</c>) ends with one of the config's
    /// <c>modules_to_save</c> names (PEFT's plain suffix match). LoRA/LoKr tensor keys are never taken as module tensors.
    /// </summary>
    public static List<SavedModule> SavedModules(SafetensorsReader reader, AdapterConfig config)
    {
        var modules = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var info in reader.Tensors)
        {
            if (SplitSaved(info.Name, config) is not var (module, tensor)) continue;
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

    private static (string Module, string Tensor)? SplitSaved(string key, AdapterConfig config)
    {
        string prefix = SavedModulePrefix(config.PeftType);
        if (config.ModulesToSave.Count == 0 || !key.StartsWith(prefix, StringComparison.Ordinal) || IsAdapterTensor(key, config.PeftType)) return null;
        string rest = key[prefix.Length..];
        for (int dot = rest.IndexOf('.'); dot > 0; dot = rest.IndexOf('.', dot + 1))
        {
            string module = rest[..dot];
            if (config.ModulesToSave.Any(n => n.Length > 0 && (prefix + module).EndsWith(n, StringComparison.Ordinal))) return (module, rest[(dot + 1)..]);
        }

        return null;
    }

    private static bool IsAdapterTensor(string key, string peftType) => peftType switch
    {
        "LORA" => LoRATensorNames.Any(n => key.EndsWith("." + n, StringComparison.Ordinal)),
        "LOKR" => LoKrTensorNames.Any(n => key.EndsWith("." + n, StringComparison.Ordinal)),
        _ => key == "prompt_embeddings",
    };

    /// <summary>
    /// Groups the tensor keys of a LoRA or LoKr adapter file by module path. Every key must be
    /// <c>base_model.model.{module}.{tensor}</c> with a tensor name of the config's method, or a tensor of a
    /// <c>modules_to_save</c> module (see <see cref="SavedModules"/>, not returned here).
    /// </summary>
    public static List<AdaptedModule> Modules(SafetensorsReader reader, AdapterConfig config)
    {
        string peftType = config.PeftType;
        string[] names = peftType == "LOKR" ? LoKrTensorNames : LoRATensorNames;
        var modules = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var info in reader.Tensors)
        {
            string key = info.Name;
            if (SplitSaved(key, config) is not null) continue;
            string? tensorName = key.StartsWith(AdapterFiles.KeyPrefix, StringComparison.Ordinal)
                ? names.FirstOrDefault(n => key.EndsWith("." + n, StringComparison.Ordinal) && key.Length > AdapterFiles.KeyPrefix.Length + n.Length + 1)
                : null;
            if (tensorName is null)
            {
                throw CliException.Failure($"{reader.Path}: tensor '{key}' is not a {peftType} adapter tensor (expected {AdapterFiles.KeyPrefix}<module>.{{{string.Join("|", names)}}})"
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

        var result = order.Select(m => new AdaptedModule(m, modules[m])).ToList();
        foreach (var module in result)
        {
            CheckComplete(reader.Path, peftType, module);
        }

        return result;
    }

    private static void CheckComplete(string path, string peftType, AdaptedModule module)
    {
        var t = module.Tensors;
        string? problem = peftType switch
        {
            "LOKR" when t.ContainsKey("lokr_w1") == (t.ContainsKey("lokr_w1_a") || t.ContainsKey("lokr_w1_b")) => "needs lokr_w1 or lokr_w1_a + lokr_w1_b",
            "LOKR" when t.ContainsKey("lokr_w1_a") != t.ContainsKey("lokr_w1_b") => "needs both lokr_w1_a and lokr_w1_b",
            "LOKR" when t.ContainsKey("lokr_w2") == (t.ContainsKey("lokr_w2_a") || t.ContainsKey("lokr_w2_b")) => "needs lokr_w2 or lokr_w2_a + lokr_w2_b",
            "LOKR" when t.ContainsKey("lokr_w2_a") != t.ContainsKey("lokr_w2_b") => "needs both lokr_w2_a and lokr_w2_b",
            "LORA" when !t.ContainsKey("lora_A.weight") || !t.ContainsKey("lora_B.weight") => "needs both lora_A.weight and lora_B.weight",
            _ => null,
        };
        if (problem is not null)
        {
            throw CliException.Failure($"{path}: module '{module.ModulePath}' {problem}; it has {string.Join(", ", t.Keys.OrderBy(k => k, StringComparer.Ordinal))}.");
        }
    }
}
