using System.Text.Json.Nodes;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// One named adapter of a model as PEFT lays it out on disk: its method, the layers that carry it, and its tensors under
/// PEFT's keys (<c>base_model.model.{path}.{name}</c>, or the bare name for prompt-learning methods). The method writes and
/// reads its own config fields (<see cref="PeftMethod"/>); this class knows no method by name.
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

    /// <summary>The adapter's persistent model-level tensors (<see cref="SharedAdapterTensors"/>) under PEFT's keys
    /// (<c>base_model.vera_A</c>, ...); empty for methods without them, or when they are not persistent.</summary>
    public List<(string Key, Tensor Value)> Shared { get; } = new();

    /// <summary>Tensors the file holds that the adapter computes from its parameters (<see cref="IComputedFileTensorsAdapter"/>,
    /// P-tuning's encoded prompt) under PEFT's keys, each with a function that computes it (a new tensor the caller disposes)
    /// and the layer's path and adapter. They are written and fingerprinted, never loaded into.</summary>
    public List<(string Key, Func<Tensor> Compute, string Path, PeftAdapter Adapter)> Computed { get; } = new();

    /// <summary>Every tensor the adapter's file holds (parameters, shared tensors, computed tensors) with a function giving a
    /// detached copy (the caller disposes it): what the merged-adapter fingerprint hashes.</summary>
    public IEnumerable<(string Key, Func<Tensor> Value)> FileTensors()
        => Tensors.Select(t => (t.Key, (Tensor)t.Value)).Concat(Shared).Select(t => (t.Key, (Func<Tensor>)(() => t.Item2.detach())))
            .Concat(Computed.Select(c => (c.Key, c.Compute)));

    /// <summary>The layers that carry the adapter: module path and the adapter.</summary>
    public List<(string Path, PeftAdapter Adapter)> Layers { get; } = new();

    /// <summary>Collects adapter <paramref name="adapterName"/> from every adapted layer of <paramref name="model"/>.</summary>
    /// <exception cref="PeftConfigurationException">No layer has it, or it mixes methods (a PEFT adapter has one peft_type).</exception>
    public static AdapterLayout Collect(nn.Module model, string adapterName)
    {
        PeftMethod? method = null;
        var layers = new List<(string Path, PeftAdapter Adapter)>();
        foreach (var (path, layer) in ModuleTree.Layers(model))
        {
            if (!layer.HasAdapter(adapterName)) continue;
            var adapter = layer.GetAdapter(adapterName);
            if (method is not null && method != adapter.Method)
            {
                throw new PeftConfigurationException(
                    $"Adapter '{adapterName}' mixes {method.Name} and {adapter.Method.Name} layers (e.g. '{path}'). A PEFT adapter has one peft_type: give the " +
                    $"[{adapter.Method.Name}] attributes another Name and save each adapter separately.", path, adapterName);
            }
            method = adapter.Method;
            layers.Add((path, adapter));
        }

        if (method is null)
        {
            var known = model.AdapterNames();
            throw new PeftConfigurationException(
                $"The model has no adapter named '{adapterName}'" + (known.Count > 0 ? $" (it has: {string.Join(", ", known)})." : " (it has no adapters: declare one with an attribute such as [LoRA] and call the generated InitializePeft() in the constructor, or add one with model.ApplyTargets(...))."),
                null, adapterName);
        }

        var layout = new AdapterLayout(adapterName, method);
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (path, adapter) in layers)
        {
            layout.Layers.Add((path, adapter));
            var computed = adapter as IComputedFileTensorsAdapter is { ComputesFileTensors: true } c ? c : null;
            var names = computed is not null ? ComputedNames(computed) : adapter.PeftTensors().Select(t => t.PeftName).ToList();
            var parameters = computed is not null ? null : adapter.PeftTensors().ToList();
            for (int i = 0; i < names.Count; i++)
            {
                string peftName = names[i];
                string key = method.IsPromptLearning ? peftName : AdapterFiles.KeyPrefix + path + "." + peftName;
                if (!keys.Add(key))
                {
                    throw new PeftConfigurationException(
                        $"Adapter '{adapterName}' is on {layers.Count} layers ({string.Join(", ", layers.Select(l => l.Path))}) whose tensors share the key {key}; " +
                        $"PEFT's {method.PeftType} format holds it once per adapter. Give the others another Name.", path, adapterName);
                }

                if (parameters is null)
                    layout.Computed.Add((key, () => ComputeOne(computed!, peftName), path, adapter));
                else
                    layout.Tensors.Add((key, parameters[i].Parameter));
            }
        }

        var sets = layers.Select(l => (l.Adapter as ISharedTensorAdapter)?.SharedTensors).Where(s => s is not null).Distinct().ToList();
        if (sets.Count > 1)
        {
            throw new PeftConfigurationException(
                $"Adapter '{adapterName}' has layers bound to {sets.Count} different sets of shared tensors; PEFT's {method.PeftType} format holds one per adapter.", null, adapterName);
        }

        if (sets is [{ Persistent: true } set])
        {
            foreach (var (name, tensor) in set.Tensors) layout.Shared.Add((SharedAdapterTensors.KeyPrefix + name, tensor));
        }
        return layout;
    }

    private static List<string> ComputedNames(IComputedFileTensorsAdapter adapter)
    {
        var tensors = adapter.ComputeFileTensors();
        try
        {
            return tensors.Select(t => t.PeftName).ToList();
        }
        finally
        {
            foreach (var (_, value) in tensors) value.Dispose();
        }
    }

    private static Tensor ComputeOne(IComputedFileTensorsAdapter adapter, string peftName)
    {
        Tensor? result = null;
        foreach (var (name, value) in adapter.ComputeFileTensors())
        {
            if (result is null && name == peftName) result = value;
            else value.Dispose();
        }

        return result ?? throw new InvalidOperationException($"Adapter '{((PeftAdapter)adapter).AdapterName}' no longer computes its file tensor {peftName}.");
    }

    /// <summary>
    /// The config fields: the method's own (<see cref="PeftMethod.WriteConfig"/>) and the targeting fields every PEFT config
    /// with target modules has (<c>target_modules</c>, and <c>exclude_modules</c> where <see cref="PeftMethod.HasExcludeModules"/>; <c>layers_to_transform</c> and
    /// <c>layers_pattern</c> only some configs have, so their methods write them). <paramref name="tokenizerNameOrPath"/> is given to prompt tuning (PEFT refuses a
    /// TEXT-initialised prompt config without one).
    /// </summary>
    public Dictionary<string, JsonNode?> ConfigFields(nn.Module model, string? tokenizerNameOrPath)
    {
        var writer = new AdapterConfigWriter(model, AdapterName, Method, Layers, tokenizerNameOrPath);
        writer.Fields["peft_type"] = Method.PeftType;
        Method.WriteConfig(writer);
        if (!Method.IsPromptLearning)
        {
            writer.Fields["target_modules"] = writer.ModuleNames(Layers.Select(l => l.Path));
            if (Method.HasExcludeModules) writer.Fields["exclude_modules"] = null;
        }
        writer.Fields["modules_to_save"] = null;
        return writer.Fields;
    }

    /// <summary>
    /// <c>fan_in_fan_out: true</c> says the adapted base layers are stored [in, out] (Conv1D). The adapter tensors are the
    /// same as for nn.Linear, so the flag is accepted exactly when the model says each adapted layer is such a layer
    /// (<see cref="IFanInFanOutLayers"/>, e.g. GPT-2, which transposes them on load); elsewhere it means the adapter was made
    /// for another architecture.
    /// </summary>
    public void CheckFanInFanOut(nn.Module model, AdapterConfig config, string source)
    {
        if (!config.FanInFanOut || Method.IsPromptLearning) return;
        if (model is not IFanInFanOutLayers conv)
            throw new AdapterFormatException($"{source}: fan_in_fan_out: true means the adapted layers are stored [in, out] (Hugging Face Conv1D, as in GPT-2), but {model.GetType().Name} does not declare any such layer (IFanInFanOutLayers); this adapter was made for another architecture. Nothing was loaded.");
        var linear = Layers.Where(l => !conv.IsFanInFanOut(l.Path)).Select(l => l.Path).ToList();
        if (linear.Count > 0)
            throw new AdapterFormatException($"{source}: fan_in_fan_out: true, but these adapted layers are stored [out, in] in {model.GetType().Name}'s checkpoints: {string.Join(", ", linear.Take(5))}{(linear.Count > 5 ? $" and {linear.Count - 5} more" : "")}. Nothing was loaded.");
    }

    /// <summary>
    /// Settings of the model's adapter that differ from the config and change what the same tensors compute
    /// (<see cref="PeftMethod.SettingMismatches"/>): loading such a file would silently compute something else.
    /// </summary>
    public List<string> SettingMismatches(AdapterConfig config)
    {
        var problems = new List<string>();
        foreach (var (path, adapter) in Layers)
        {
            var fromFile = Method.ReadOptions(config, Method.IsPromptLearning ? null : path);
            problems.AddRange(Method.SettingMismatches(path, fromFile, adapter.Config));
        }
        return problems;
    }
}
