using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Inserting, saving and loading adaption prompts (<see cref="AdaptionPromptConfig"/>) on any model whose transformer stack's
/// attentions offer insertion points (every <c>Peft.Models</c> family, or a user's own: docs/ARCHITECTURE.md, "Transformer
/// stacks").
/// </summary>
/// <remarks>
/// Files are PEFT's: <c>adapter_config.json</c> with <c>peft_type</c> <c>ADAPTION_PROMPT</c>, <c>adapter_len</c>,
/// <c>adapter_layers</c>, <c>target_modules</c> (the attention's module name: <c>self_attn</c> for Llama, <c>attn</c> for
/// GPT-2) and the common fields; <c>adapter_model.safetensors</c> keyed
/// <c>base_model.model.&lt;attention path&gt;.adaption_prompt</c> and <c>….adaption_gate</c>
/// (<c>base_model.model.model.layers.N.self_attn.adaption_prompt</c> for a Llama causal LM, as PEFT names them).
/// </remarks>
public static class AdaptionPrompts
{
    private const string PointSegment = "." + AttentionInsertionPoint.ModuleName + ".adapters.";

    /// <summary>
    /// Inserts an adaption prompt named <paramref name="adapterName"/> into the attention of each of the top
    /// <see cref="AdaptionPromptConfig.AdapterLayers"/> blocks of the model's stack, on the device and in the floating dtype of
    /// the model's parameters, then applies the trainability rule (the prompts and gates train, the base model is frozen).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="config">The configuration.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <returns>The inserted adapters with the paths of their attentions, bottom first.</returns>
    /// <exception cref="PeftConfigurationException">A field is out of range, the model has no stack or its attentions offer no
    /// insertion points, or the name is taken; nothing is inserted then.</exception>
    public static IReadOnlyList<(string AttentionPath, AdaptionPromptAdapter Adapter)> AddAdaptionPrompt(this nn.Module model, AdaptionPromptConfig config, string adapterName = AdapterNames.Default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        AdapterNameRules.Validate(adapterName, null);
        var attentions = Plan(model, config);
        if (model.InsertedAdapters().Any(a => a.Adapter.AdapterName == adapterName))
        {
            throw new PeftConfigurationException(
                $"The model already has an inserted adapter named '{adapterName}'; pass another adapterName to AddAdaptionPrompt.", null, adapterName);
        }

        var reference = model.parameters().FirstOrDefault(p => p.is_floating_point());
        var created = new List<AdaptionPromptAdapter>();
        foreach (var attention in attentions)
        {
            var adapter = new AdaptionPromptAdapter(adapterName, config, attention.Geometry);
            if (reference is not null) adapter.to(reference.device).to(reference.dtype);
            attention.Insert(adapter);
            created.Add(adapter);
        }

        model.ApplyTrainability();
        return Located(model, adapterName).Where(l => created.Contains(l.Adapter)).ToList();
    }

    /// <summary>Writes the adaption prompt named <paramref name="adapterName"/> in PEFT's layout (<see cref="AdapterFiles.ConfigFileName"/>
    /// and <see cref="AdapterFiles.WeightsFileName"/>) into <paramref name="directory"/>.</summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory (created when missing).</param>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="options">The common fields (<c>base_model_name_or_path</c>, <c>task_type</c>, <c>revision</c>); the other options do not apply.</param>
    /// <exception cref="PeftConfigurationException">The model has no adaption prompt of that name.</exception>
    public static void SaveAdaptionPrompt(this nn.Module model, string directory, string adapterName = AdapterNames.Default, AdapterSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        options ??= new AdapterSaveOptions();
        var located = Located(model, adapterName);
        if (located.Count == 0)
        {
            throw new PeftConfigurationException(
                $"The model has no adaption prompt named '{adapterName}' (add one with AddAdaptionPrompt).", null, adapterName);
        }

        var config = located[0].Adapter.Config;
        var names = located.Select(l => LastSegment(l.AttentionPath)).Distinct().ToList();
        var fields = new Dictionary<string, JsonNode?>
        {
            ["peft_type"] = AdaptionPromptConfig.PeftType,
            ["adapter_len"] = config.AdapterLen,
            ["adapter_layers"] = config.AdapterLayers,
            // The attention's module name (PEFT's "self_attn"); none where blocks are their own attention (an index, USE-lite).
            ["target_modules"] = names.Count == 1 && !names[0].All(char.IsAsciiDigit) ? names[0] : null,
            ["base_model_name_or_path"] = options.BaseModelNameOrPath,
            ["task_type"] = options.TaskType,
            ["revision"] = options.Revision,
            ["inference_mode"] = true,
            ["peft_version"] = AdapterFiles.PeftVersion,
            ["auto_mapping"] = null,
        };
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var (path, adapter) in located)
            {
                tensors.Add(new(Key(path, "adaption_prompt"), adapter.Prompt.detach().cpu().contiguous()));
                tensors.Add(new(Key(path, "adaption_gate"), adapter.Gate.detach().cpu().contiguous()));
            }

            Directory.CreateDirectory(directory);
            SafetensorsFile.Write(Path.Combine(directory, AdapterFiles.WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
        }

        Checkpoints.AtomicFile.WriteAllText(Path.Combine(directory, AdapterFiles.ConfigFileName), AdapterConfig.ToJson(fields));
    }

    /// <summary>
    /// Reads a PEFT adaption-prompt directory and inserts its prompts into the model as <paramref name="adapterName"/>, checking
    /// every field, key and shape before anything is inserted.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory.</param>
    /// <param name="adapterName">The name to give the adapter.</param>
    /// <exception cref="AdapterFormatException">A file is missing, the config is not an adaption prompt's, or a field is wrong
    /// or does not fit the model (the message names the file and field).</exception>
    /// <exception cref="TensorMismatchException">The tensors do not match the model's attentions (missing, unexpected or
    /// misshapen keys, all listed).</exception>
    public static void LoadAdaptionPrompt(this nn.Module model, string directory, string adapterName = AdapterNames.Default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(directory);
        var (config, configPath, targetModules) = ReadConfig(directory);
        string weightsPath = Path.Combine(directory, AdapterFiles.WeightsFileName);
        List<AttentionInsertions> attentions;
        try
        {
            attentions = Plan(model, config);
        }
        catch (PeftConfigurationException e)
        {
            throw new AdapterFormatException(configPath, e.MemberName == nameof(AdaptionPromptConfig.AdapterLayers) ? "adapter_layers" : null, e.Message, e);
        }

        var paths = AttentionPaths(model, attentions);
        if (targetModules is not null && paths.FirstOrDefault(p => LastSegment(p) != targetModules) is { } other)
        {
            throw new AdapterFormatException(configPath, "target_modules",
                $"\"target_modules\" is '{targetModules}', but this model's attention modules are named '{LastSegment(other)}' ({other}); load the file into the model family it was saved from.");
        }

        if (!File.Exists(weightsPath))
        {
            throw new AdapterFormatException(weightsPath, null, "the tensor file is missing; an adapter directory holds adapter_config.json and adapter_model.safetensors.");
        }

        using var reader = SafetensorsFile.Open(weightsPath);
        var expected = new Dictionary<string, long[]>(StringComparer.Ordinal);
        for (int i = 0; i < attentions.Count; i++)
        {
            expected[Key(paths[i], "adaption_prompt")] = [1, config.AdapterLen, attentions[i].Geometry.HiddenSize];
            expected[Key(paths[i], "adaption_gate")] = [1];
        }

        var found = reader.Tensors.ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);
        var missing = expected.Keys.Where(k => !found.ContainsKey(k)).ToList();
        var unexpected = found.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        var shapes = expected.Where(e => found.TryGetValue(e.Key, out var s) && !s.SequenceEqual(e.Value))
            .Select(e => $"{e.Key}: file [{string.Join(", ", found[e.Key])}], model [{string.Join(", ", e.Value)}]").ToList();
        if (missing.Count + unexpected.Count + shapes.Count > 0)
        {
            throw new TensorMismatchException(weightsPath,
                $"{weightsPath} does not match the model's top {config.AdapterLayers} attentions with adapter_len {config.AdapterLen}: {missing.Count} missing, " +
                $"{unexpected.Count} unexpected, {shapes.Count} misshapen ({string.Join("; ", missing.Concat(unexpected).Concat(shapes).Take(4))}). Load it into the model it was saved from.",
                missing, unexpected, shapes);
        }

        var inserted = model.AddAdaptionPrompt(config, adapterName);
        using var _ = no_grad();
        foreach (var (path, adapter) in inserted)
        {
            using var prompt = reader.ReadTensor(Key(path, "adaption_prompt"));
            using var gate = reader.ReadTensor(Key(path, "adaption_gate"));
            adapter.Prompt.copy_(prompt);
            adapter.Gate.copy_(gate);
        }
    }

    /// <summary>Reads and checks an adaption-prompt directory's config without a model (for <c>peft inspect</c>).</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>The configuration, the config file's path and its <c>target_modules</c> (null when absent).</returns>
    /// <exception cref="AdapterFormatException">The file is missing, not an adaption prompt's, or a field is wrong.</exception>
    public static (AdaptionPromptConfig Config, string ConfigPath, string? TargetModules) ReadConfig(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        if (!File.Exists(path))
        {
            throw new AdapterFormatException(path, null, "the configuration file is missing; an adapter directory holds adapter_config.json and adapter_model.safetensors.");
        }

        var file = AdapterConfig.Read(path);
        if (file.PeftType != AdaptionPromptConfig.PeftType)
        {
            throw new AdapterFormatException(path, "peft_type", $"\"peft_type\" is '{file.PeftType}', not '{AdaptionPromptConfig.PeftType}': load it with AdapterFiles.Load.");
        }

        foreach (var field in new[] { "adapter_len", "adapter_layers" })
        {
            if (file.Raw[field] is null) throw new AdapterFormatException(path, field, $"\"{field}\" is missing (PEFT's AdaptionPromptConfig needs it).");
        }

        var config = new AdaptionPromptConfig(file.GetInt("adapter_len", 0), file.GetInt("adapter_layers", 0));
        try
        {
            config.Validate();
        }
        catch (PeftConfigurationException e)
        {
            throw new AdapterFormatException(path, e.MemberName == nameof(AdaptionPromptConfig.AdapterLen) ? "adapter_len" : "adapter_layers", e.Message, e);
        }

        return (config, path, file.GetString("target_modules"));
    }

    /// <summary>Whether the directory's config names <c>ADAPTION_PROMPT</c>.</summary>
    /// <param name="directory">An adapter directory.</param>
    /// <returns>True for an adaption prompt's directory.</returns>
    public static bool IsAdaptionPrompt(string directory)
    {
        string path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        return File.Exists(path) && AdapterConfig.Read(path).PeftType == AdaptionPromptConfig.PeftType;
    }

    /// <summary>The attention path a PEFT key belongs to (<c>base_model.model.X.adaption_prompt</c> → <c>X</c>), or null.</summary>
    /// <param name="key">A tensor key.</param>
    /// <returns>The path, or null when the key is not an adaption prompt's.</returns>
    public static string? AttentionPathOf(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (!key.StartsWith(AdapterFiles.KeyPrefix, StringComparison.Ordinal)) return null;
        string rest = key[AdapterFiles.KeyPrefix.Length..];
        foreach (var name in AdaptionPromptAdapter.TensorNames)
        {
            if (rest.EndsWith("." + name, StringComparison.Ordinal)) return rest[..^(name.Length + 1)];
        }

        return null;
    }

    private static string Key(string attentionPath, string tensor) => AdapterFiles.KeyPrefix + (attentionPath.Length == 0 ? "" : attentionPath + ".") + tensor;

    private static string LastSegment(string path) => path.Length == 0 ? "" : path[(path.LastIndexOf('.') + 1)..];

    private static List<AttentionInsertions> Plan(nn.Module model, AdaptionPromptConfig config)
    {
        config.Validate();
        var (_, attentions) = TransformerBlocks.FindAttentions(model);
        config.ValidateFor(attentions.Count);
        return attentions.Skip(attentions.Count - config.AdapterLayers).ToList();
    }

    /// <summary>The module path of each attention (<see cref="AttentionInsertions.Module"/>, on which the point registers).</summary>
    private static List<string> AttentionPaths(nn.Module model, IReadOnlyList<AttentionInsertions> attentions)
    {
        var paths = ModuleTree.Walk(model).ToDictionary(n => (object)n.Module, n => n.Path, ReferenceEqualityComparer.Instance);
        return attentions.Select(a => paths.TryGetValue(a.Module, out var path) ? path : throw new PeftConfigurationException(
            $"The attention module of layer {a.Geometry.Layer} ({a.Module.GetType().Name}) is not registered in the model's tree; register it as a child of its block.",
            null, null)).ToList();
    }

    private static List<(string AttentionPath, AdaptionPromptAdapter Adapter)> Located(nn.Module model, string adapterName)
    {
        var list = new List<(string, AdaptionPromptAdapter)>();
        string suffix = PointSegment + adapterName;
        foreach (var (path, adapter) in model.InsertedAdapters())
        {
            if (adapter is not AdaptionPromptAdapter prompt || adapter.AdapterName != adapterName) continue;
            string full = "." + path;
            list.Add((full.EndsWith(suffix, StringComparison.Ordinal) ? full[..^suffix.Length].TrimStart('.') : path, prompt));
        }

        return list;
    }
}
