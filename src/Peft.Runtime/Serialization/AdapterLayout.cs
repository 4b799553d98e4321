using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// One named adapter of a model as PEFT lays it out on disk: its method, its tensors under PEFT's keys, and the
/// per-layer settings that become <c>adapter_config.json</c>.
/// </summary>
internal sealed class AdapterLayout
{
    private AdapterLayout(string adapterName, PeftMethod method)
    {
        AdapterName = adapterName;
        Method = method;
    }

    public string AdapterName { get; }

    public PeftMethod Method { get; }

    /// <summary>(PEFT key, parameter) in a stable order.</summary>
    public List<(string Key, Parameter Value)> Tensors { get; } = new();

    /// <summary>Adapted linear layers: module path and the adapter's options.</summary>
    public List<(string Path, PeftAdapterOptions Options)> Layers { get; } = new();

    /// <summary>Prompt tuning: virtual tokens and token dimension.</summary>
    public (int VirtualTokens, long TokenDim, string? InitText)? Prompt { get; private set; }

    public static PeftMethod MethodOf(AdapterConfig config, string source) => config.PeftType switch
    {
        "LORA" when config.UseDora => throw new AdapterFormatException($"{source}: DoRA adapters (use_dora: true) are not supported yet."),
        "LORA" when config.Bias != "none" => throw new AdapterFormatException($"{source}: bias \"{config.Bias}\" is not supported (only \"none\")."),
        "LORA" when config.LoraBias => throw new AdapterFormatException($"{source}: lora_bias: true (a bias on lora_B) is not supported."),
        "LORA" => PeftMethod.LoRA,
        "LOKR" => PeftMethod.Kronecker,
        "PROMPT_TUNING" => PeftMethod.PromptTuning,
        _ => throw new AdapterFormatException($"{source}: peft_type \"{config.PeftType}\" is not supported (supported: LORA, LOKR, PROMPT_TUNING)."),
    };

    /// <summary>
    /// <c>fan_in_fan_out: true</c> says the adapted base layers are stored [in, out] (Conv1D). The adapter tensors are the
    /// same as for nn.Linear, so the flag is accepted exactly when the model says each adapted layer is such a layer
    /// (<see cref="IFanInFanOutLayers"/>, e.g. GPT-2, which transposes them on load); elsewhere it means the adapter was
    /// made for another architecture.
    /// </summary>
    public void CheckFanInFanOut(nn.Module model, AdapterConfig config, string source)
    {
        if (!config.FanInFanOut || Method != PeftMethod.LoRA) return;
        if (model is not IFanInFanOutLayers conv)
            throw new AdapterFormatException($"{source}: fan_in_fan_out: true means the adapted layers are stored [in, out] (Hugging Face Conv1D, as in GPT-2), but {model.GetType().Name} does not declare any such layer (IFanInFanOutLayers); this adapter was made for another architecture. Nothing was loaded.");
        var linear = Layers.Where(l => !conv.IsFanInFanOut(l.Path)).Select(l => l.Path).ToList();
        if (linear.Count > 0)
            throw new AdapterFormatException($"{source}: fan_in_fan_out: true, but these adapted layers are stored [out, in] in {model.GetType().Name}'s checkpoints: {string.Join(", ", linear.Take(5))}{(linear.Count > 5 ? $" and {linear.Count - 5} more" : "")}. Nothing was loaded.");
    }

    public static string PeftTypeOf(PeftMethod method) => method switch
    {
        PeftMethod.LoRA => "LORA",
        PeftMethod.Kronecker => "LOKR",
        PeftMethod.PromptTuning => "PROMPT_TUNING",
        _ => method.ToString().ToUpperInvariant(),
    };

    /// <summary>Collects adapter <paramref name="adapterName"/> from every adapted layer of <paramref name="model"/>.</summary>
    public static AdapterLayout Collect(nn.Module model, string adapterName)
    {
        PeftMethod? method = null;
        var layout = new List<(string Path, LinearAdapter Adapter)>();
        foreach (var (path, layer) in model.AdaptedLayers())
        {
            foreach (var adapter in layer.Adapters)
            {
                if (adapter.AdapterName != adapterName) continue;
                if (method is not null && method != adapter.Method)
                {
                    throw new PeftConfigurationException(
                        $"Adapter '{adapterName}' mixes {method} and {adapter.Method} layers (e.g. '{path}'). A PEFT adapter has one peft_type: give the " +
                        $"{adapter.Method} attributes another Name and save each adapter separately.", path, adapterName);
                }
                method = adapter.Method;
                layout.Add((path, adapter));
            }
        }

        var prompts = model.PromptEmbeddings().Where(p => p.Layer.HasAdapter(adapterName)).ToList();
        if (prompts.Count > 0 && method is not null)
        {
            throw new PeftConfigurationException(
                $"Adapter '{adapterName}' mixes prompt tuning with {method} layers. Give the [PromptTune] attribute another Name.", prompts[0].Path, adapterName);
        }
        if (prompts.Count > 1)
        {
            throw new PeftConfigurationException(
                $"Adapter '{adapterName}' is a prompt on {prompts.Count} embeddings ({string.Join(", ", prompts.Select(p => p.Path))}); PEFT's format holds one prompt per adapter.",
                prompts[1].Path, adapterName);
        }

        if (prompts.Count == 1)
        {
            var (path, embedding) = prompts[0];
            var result = new AdapterLayout(adapterName, PeftMethod.PromptTuning);
            var adapter = embedding.GetAdapter(adapterName);
            foreach (var (peftName, parameter) in adapter.PeftTensors()) result.Tensors.Add((peftName, parameter));
            result.Prompt = (adapter.VirtualTokens, adapter.EmbeddingDim, adapter.Options.InitText);
            return result;
        }

        if (method is null)
        {
            var known = model.AdapterNames();
            throw new PeftConfigurationException(
                $"The model has no adapter named '{adapterName}'" + (known.Count > 0 ? $" (it has: {string.Join(", ", known)})." : " (it declares no adapters)."),
                null, adapterName);
        }

        var linear = new AdapterLayout(adapterName, method.Value);
        foreach (var (path, adapter) in layout)
        {
            linear.Layers.Add((path, adapter.Config));
            foreach (var (peftName, parameter) in adapter.PeftTensors())
            {
                linear.Tensors.Add((AdapterFiles.KeyPrefix + path + "." + peftName, parameter));
            }
        }
        return linear;
    }

    /// <summary>
    /// The config fields PEFT writes for this method (everything but the caller-supplied metadata).
    /// <paramref name="tokenizerNameOrPath"/> is written for prompt tuning: PEFT refuses a TEXT-initialised prompt
    /// config without one, so without it the config says RANDOM (the init text is still recorded).
    /// </summary>
    public Dictionary<string, JsonNode?> ConfigFields(nn.Module model, string? tokenizerNameOrPath)
    {
        var fields = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        switch (Method)
        {
            case PeftMethod.PromptTuning:
            {
                var (tokens, dim, initText) = Prompt!.Value;
                fields["peft_type"] = "PROMPT_TUNING";
                fields["num_virtual_tokens"] = tokens;
                fields["token_dim"] = dim;
                fields["num_transformer_submodules"] = 1;
                fields["num_attention_heads"] = null;
                fields["num_layers"] = null;
                bool text = initText is not null && tokenizerNameOrPath is not null;
                fields["prompt_tuning_init"] = text ? "TEXT" : "RANDOM";
                fields["prompt_tuning_init_text"] = initText;
                fields["tokenizer_name_or_path"] = text ? tokenizerNameOrPath : null;
                fields["tokenizer_kwargs"] = null;
                return fields;
            }
            case PeftMethod.LoRA:
            {
                var options = Layers.Select(l => (l.Path, Options: (LoRAOptions)l.Options)).ToList();
                int r = MostCommon(options.Select(o => o.Options.Rank));
                double alpha = MostCommon(options.Select(o => o.Options.Alpha));
                bool rs = options[0].Options.UseRsLora;
                var init = options[0].Options.Init;
                foreach (var (path, o) in options)
                {
                    if (o.UseRsLora != rs || o.Init != init)
                        throw new PeftConfigurationException($"LoRA adapter '{AdapterName}' mixes UseRsLora/Init settings across layers (see '{path}'); PEFT stores one value per adapter.", path, AdapterName);
                }
                double dropout = options[0].Options.Dropout;
                foreach (var (path, o) in options)
                {
                    if (o.Dropout != dropout)
                        throw new PeftConfigurationException($"LoRA adapter '{AdapterName}' mixes dropout {dropout} and {o.Dropout} across layers (see '{path}'); PEFT stores one lora_dropout per adapter.", path, AdapterName);
                }
                fields["peft_type"] = "LORA";
                fields["r"] = r;
                fields["lora_alpha"] = alpha;
                fields["lora_dropout"] = dropout;
                fields["use_rslora"] = rs;
                fields["use_dora"] = false;
                // PEFT's flag for Conv1D ([in, out]) base layers (GPT-2). It is one flag per adapter: an adapter over both
                // kinds could not be merged into a checkpoint file without guessing each layer's orientation.
                bool fanInFanOut = false;
                if (model is IFanInFanOutLayers conv)
                {
                    var conv1D = options.Where(o => conv.IsFanInFanOut(o.Path)).Select(o => o.Path).ToList();
                    var linear = options.Where(o => !conv.IsFanInFanOut(o.Path)).Select(o => o.Path).ToList();
                    if (conv1D.Count > 0 && linear.Count > 0)
                        throw new PeftConfigurationException(
                            $"LoRA adapter '{AdapterName}' covers layers stored [in, out] in checkpoints (Conv1D: {string.Join(", ", conv1D.Take(3))}{(conv1D.Count > 3 ? ", ..." : "")}) and [out, in] ones ({string.Join(", ", linear.Take(3))}{(linear.Count > 3 ? ", ..." : "")}); " +
                            "PEFT's fan_in_fan_out is one flag per adapter, so a merge into the checkpoint could not orient both. Put them in two adapters (different names). Nothing was written.",
                            linear[0], AdapterName);
                    fanInFanOut = conv1D.Count > 0;
                }
                fields["fan_in_fan_out"] = fanInFanOut;
                fields["bias"] = "none";
                fields["lora_bias"] = false;
                fields["init_lora_weights"] = init == LoRAInit.Gaussian ? "gaussian" : true;
                fields["rank_pattern"] = Pattern(options.Where(o => o.Options.Rank != r).Select(o => (o.Path, (JsonNode?)o.Options.Rank)));
                fields["alpha_pattern"] = Pattern(options.Where(o => o.Options.Alpha != alpha).Select(o => (o.Path, (JsonNode?)o.Options.Alpha)));
                break;
            }
            case PeftMethod.Kronecker:
            {
                var options = Layers.Select(l => (l.Path, Options: (KroneckerOptions)l.Options)).ToList();
                int r = MostCommon(options.Select(o => o.Options.Rank));
                double alpha = MostCommon(options.Select(o => o.Options.Alpha));
                var first = options[0].Options;
                foreach (var (path, o) in options)
                {
                    if (o.Factor != first.Factor || o.DecomposeBoth != first.DecomposeBoth)
                        throw new PeftConfigurationException($"Kronecker adapter '{AdapterName}' mixes Factor/DecomposeBoth across layers (see '{path}'); PEFT stores one value per adapter.", path, AdapterName);
                }
                fields["peft_type"] = "LOKR";
                fields["r"] = r;
                fields["alpha"] = alpha;
                fields["decompose_factor"] = first.Factor;
                fields["decompose_both"] = first.DecomposeBoth;
                fields["rank_dropout"] = 0.0;
                fields["module_dropout"] = 0.0;
                fields["rank_dropout_scale"] = false;
                fields["use_effective_conv2d"] = false;
                fields["init_weights"] = true;
                fields["rank_pattern"] = Pattern(options.Where(o => o.Options.Rank != r).Select(o => (o.Path, (JsonNode?)o.Options.Rank)));
                fields["alpha_pattern"] = Pattern(options.Where(o => o.Options.Alpha != alpha).Select(o => (o.Path, (JsonNode?)o.Options.Alpha)));
                break;
            }
        }

        fields["target_modules"] = TargetModules(model);
        fields["exclude_modules"] = null;
        fields["layers_to_transform"] = null;
        fields["layers_pattern"] = null;
        fields["modules_to_save"] = null;
        return fields;
    }

    /// <summary>
    /// The shortest names that select exactly the adapted layers under PEFT's matching rule (a list entry matches a
    /// module whose name equals it or ends with "." + entry, whatever the module's type): the last path segment when
    /// every module with that name is adapted, else the full path. When even a full path would also select another
    /// module (a path that is a suffix of another one), the list becomes a regex string naming exactly the adapted paths.
    /// </summary>
    private JsonNode TargetModules(nn.Module model)
    {
        var adapted = new HashSet<string>(Layers.Select(l => l.Path), StringComparer.Ordinal);
        var modulePaths = ModulePaths(model);
        bool SelectsOnlyAdapted(string name) => modulePaths
            .Where(p => p == name || p.EndsWith("." + name, StringComparison.Ordinal))
            .All(adapted.Contains);

        var result = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var path in adapted)
        {
            string shortName = path[(path.LastIndexOf('.') + 1)..];
            if (SelectsOnlyAdapted(shortName)) result.Add(shortName);
            else if (SelectsOnlyAdapted(path)) result.Add(path);
            else
            {
                var exact = adapted.OrderBy(p => p, StringComparer.Ordinal).Select(System.Text.RegularExpressions.Regex.Escape);
                return JsonValue.Create(string.Join("|", exact));
            }
        }
        return new JsonArray(result.Select(t => (JsonNode?)t).ToArray());
    }

    /// <summary>
    /// The dotted paths of every module of the tree as the user's model has them: the subtrees of adapter wrappers
    /// (adapter modules such as <c>lora_A</c>) are not part of the base model PEFT matches names against.
    /// </summary>
    internal static List<(string Path, nn.Module Module)> ModuleTree(nn.Module model)
    {
        var list = new List<(string Path, nn.Module Module)>();
        Visit(model, string.Empty);
        return list;

        void Visit(nn.Module module, string path)
        {
            if (module is AdaptedLinear or PromptTuningEmbedding) return;
            foreach (var (name, child) in module.named_children())
            {
                string childPath = path.Length == 0 ? name : path + "." + name;
                list.Add((childPath, child));
                Visit(child, childPath);
            }
        }
    }

    private static List<string> ModulePaths(nn.Module model) => ModuleTree(model).Select(m => m.Path).ToList();

    private static JsonObject Pattern(IEnumerable<(string Path, JsonNode? Value)> entries)
    {
        var obj = new JsonObject();
        foreach (var (path, value) in entries.OrderBy(e => e.Path, StringComparer.Ordinal)) obj[path] = value;
        return obj;
    }

    private static T MostCommon<T>(IEnumerable<T> values) where T : notnull
        => values.GroupBy(v => v).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;

    /// <summary>
    /// Settings of the model's adapter that differ from the config and change the adapter's output for the same tensors
    /// (rank, alpha and rsLoRA enter the scaling): loading such a file would silently compute something else.
    /// </summary>
    public List<string> SettingMismatches(AdapterConfig config)
    {
        var problems = new List<string>();
        foreach (var (path, options) in Layers)
        {
            int r = config.RankFor(path);
            double alpha = config.AlphaFor(path);
            switch (options)
            {
                case LoRAOptions lora:
                    if (r != lora.Rank) problems.Add($"{path}: r is {r} in the config, {lora.Rank} in the model");
                    if (alpha != lora.Alpha) problems.Add($"{path}: lora_alpha is {alpha} in the config, {lora.Alpha} in the model");
                    if (config.UseRsLora != lora.UseRsLora) problems.Add($"{path}: use_rslora is {Json(config.UseRsLora)} in the config, {Json(lora.UseRsLora)} in the model");
                    break;
                case KroneckerOptions kron:
                    if (r != kron.Rank) problems.Add($"{path}: r is {r} in the config, {kron.Rank} in the model");
                    if (alpha != kron.Alpha) problems.Add($"{path}: alpha is {alpha} in the config, {kron.Alpha} in the model");
                    break;
            }
        }
        return problems;

        static string Json(bool value) => value ? "true" : "false";
    }

    /// <summary>
    /// Makes sure adapter <paramref name="adapterName"/> exists before loading: when no layer has it, creates it from
    /// the config on the wrapped layers the config targets (PEFT's <c>load_adapter</c> with a new name).
    /// </summary>
    public static void EnsureAdapter(nn.Module model, string adapterName, PeftMethod method, AdapterConfig config, string source)
    {
        if (model.AdapterNames().Contains(adapterName)) return;
        switch (method)
        {
            case PeftMethod.PromptTuning:
            {
                var embeddings = model.PromptEmbeddings().ToList();
                if (embeddings.Count != 1)
                    throw new AdapterFormatException($"{source}: loading a new prompt adapter '{adapterName}' needs exactly one [PromptTune] embedding in the model; found {embeddings.Count}.");
                if (config.NumVirtualTokens <= 0)
                    throw new AdapterFormatException($"{source}: \"num_virtual_tokens\" must be a positive integer to create prompt adapter '{adapterName}', found {config.NumVirtualTokens}.");
                embeddings[0].Layer.WithPrompt(adapterName, new PromptTuningOptions(config.NumVirtualTokens));
                model.ApplyTrainability();
                return;
            }
            default:
            {
                // The adapter is created on the layers the config targets, by the same code as model.ApplyTargets:
                // adapted layers and the plain Linear members of classes the generator emits for; nothing changes on error.
                try
                {
                    var targets = PeftTargets.ForLoading(config, adapterName, source);
                    model.ApplyTargets(targets);
                }
                catch (PeftConfigurationException ex)
                {
                    throw new AdapterFormatException($"{source}: creating adapter '{adapterName}' from its target_modules failed: {ex.Message}", ex);
                }
                model.ApplyTrainability();
                return;
            }
        }
    }
}
