using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>One attention's entry in a LoFiT file.</summary>
/// <param name="Layer">The block's index.</param>
/// <param name="Attention">The attention module's path (the tensors' key prefix).</param>
/// <param name="OutputProjection">The path of the layer projecting its heads (what a merge changes).</param>
/// <param name="NumHeads">The attention's heads.</param>
/// <param name="HeadDim">Its head width.</param>
/// <param name="Heads">The selected heads, ascending (row order of the tensors).</param>
public sealed record LoFiTFileLayer(int Layer, string Attention, string OutputProjection, int NumHeads, int HeadDim, IReadOnlyList<int> Heads);

/// <summary>A LoFiT directory's configuration as read by <see cref="LoFiTFiles.ReadConfig"/>.</summary>
/// <param name="Config">The method's fields.</param>
/// <param name="AdapterName">The saved adapter name.</param>
/// <param name="Layers">The attentions, bottom first.</param>
/// <param name="ConfigPath">The config file.</param>
public sealed record LoFiTFile(LoFiTConfig Config, string AdapterName, IReadOnlyList<LoFiTFileLayer> Layers, string ConfigPath)
{
    /// <summary>The tensor key of <paramref name="tensor"/> (<c>lofit_A</c> or <c>lofit_v</c>) for <paramref name="layer"/>.</summary>
    /// <param name="layer">The entry.</param>
    /// <param name="tensor">The tensor name.</param>
    /// <returns><c>&lt;attention&gt;.&lt;tensor&gt;</c>.</returns>
    public static string Key(LoFiTFileLayer layer, string tensor)
    {
        ArgumentNullException.ThrowIfNull(layer);
        return layer.Attention.Length == 0 ? tensor : layer.Attention + "." + tensor;
    }

    /// <summary>The tensor names the configuration's components hold.</summary>
    public IReadOnlyList<string> TensorNames => LoFiTAdapter.TensorNames.Where(n => n == "lofit_A" ? Config.HasScale : Config.HasBias).ToList();
}

/// <summary>
/// LoFiT's files. LoFiT is not in PEFT and the authors save whole models, so a directory holds this library's
/// <c>adapter_config.json</c> (<c>peft_type</c> <c>LOFIT</c>, <c>adapter_name</c>, <c>components</c> (<c>scale</c>, <c>bias</c>,
/// <c>scale_and_bias</c>), <c>l1_lambda</c>, <c>init_std</c>, and <c>layers</c>: per attention with selected heads its
/// <c>layer</c>, <c>attention</c> path, <c>output_projection</c> path, <c>num_heads</c>, <c>head_dim</c> and <c>heads</c>) and
/// <c>adapter_model.safetensors</c> with <c>&lt;attention&gt;.lofit_A</c> and/or <c>….lofit_v</c>, each <c>[k, head_dim]</c>, row
/// <c>i</c> for the <c>i</c>-th listed head. The output projection's path lets <c>peft merge</c> fold the file into a base
/// weights file without the model.
/// </summary>
public static class LoFiTFiles
{
    /// <summary>Writes the LoFiT adapter <paramref name="adapterName"/> to <paramref name="directory"/> (config atomically).</summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory (created when missing).</param>
    /// <param name="adapterName">The adapter.</param>
    /// <exception cref="PeftConfigurationException">No such adapter, or it is merged (save the unmerged vectors).</exception>
    public static void SaveLoFiT(this nn.Module model, string directory, string adapterName = LoFiT.DefaultAdapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var located = LoFiT.Located(model, adapterName);
        if (located.FirstOrDefault(l => l.Adapter.Merged) is { Adapter: { } merged })
        {
            throw new PeftConfigurationException($"LoFiT adapter '{adapterName}' is merged (layer {merged.Geometry.Layer}); unmerge it before saving.", null, adapterName);
        }

        var paths = model.named_modules().ToDictionary(m => (object)m.module, m => m.name, ReferenceEqualityComparer.Instance);
        string PathOf(nn.Module module, int layer) => paths.TryGetValue(module, out var p) ? p : throw new PeftConfigurationException(
            $"The attention of layer {layer} or its output projection is not registered in the model's tree; register it as a child of its block.", null, adapterName);
        var layers = new JsonArray();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var (attention, adapter) in located)
            {
                var entry = new LoFiTFileLayer(adapter.Geometry.Layer, PathOf(attention.Module, adapter.Geometry.Layer),
                    PathOf(attention.OutputProjectionWeights().Module, adapter.Geometry.Layer), adapter.Geometry.Heads, adapter.Geometry.HeadDim, adapter.Heads);
                layers.Add(new JsonObject
                {
                    ["layer"] = entry.Layer,
                    ["attention"] = entry.Attention,
                    ["output_projection"] = entry.OutputProjection,
                    ["num_heads"] = entry.NumHeads,
                    ["head_dim"] = entry.HeadDim,
                    ["heads"] = new JsonArray(entry.Heads.Select(h => (JsonNode)h).ToArray()),
                });
                if (adapter.Scale is { } a) tensors.Add(new(LoFiTFile.Key(entry, "lofit_A"), a.detach().cpu().contiguous()));
                if (adapter.Bias is { } v) tensors.Add(new(LoFiTFile.Key(entry, "lofit_v"), v.detach().cpu().contiguous()));
            }

            Directory.CreateDirectory(directory);
            SafetensorsFile.Write(Path.Combine(directory, AdapterFiles.WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
        }

        var config = located[0].Adapter.Config;
        var json = new JsonObject
        {
            ["peft_type"] = LoFiTConfig.PeftType,
            ["adapter_name"] = adapterName,
            ["components"] = LoFiTConfig.FileName(config.Components),
            ["l1_lambda"] = config.L1Lambda,
            ["init_std"] = config.InitStd,
            ["layers"] = layers,
        };
        Checkpoints.AtomicFile.WriteAllText(Path.Combine(directory, AdapterFiles.ConfigFileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>
    /// Reads a directory written by <see cref="SaveLoFiT"/> and inserts its adapter (as <paramref name="adapterName"/>, or the
    /// saved name), checking every field, path, shape and key against the model before anything is inserted.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory.</param>
    /// <param name="adapterName">The name to give the adapter, or null for the saved one.</param>
    /// <returns>The inserted adapters.</returns>
    /// <exception cref="AdapterFormatException">A file is missing, a field is wrong or does not fit the model (named).</exception>
    /// <exception cref="TensorMismatchException">The tensors do not match the config (missing, unexpected, misshapen; all listed).</exception>
    public static IReadOnlyList<LoFiTAdapter> LoadLoFiT(this nn.Module model, string directory, string? adapterName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var file = ReadConfig(directory);
        var (_, attentions) = TransformerBlocks.FindAttentions(model);
        var paths = model.named_modules().ToDictionary(m => (object)m.module, m => m.name, ReferenceEqualityComparer.Instance);
        foreach (var layer in file.Layers)
        {
            if (layer.Layer >= attentions.Count)
            {
                throw new AdapterFormatException(file.ConfigPath, "layers", $"layer {layer.Layer} is beyond this model's {attentions.Count} attention(s); load the file into the model it was saved from.");
            }

            var attention = attentions[layer.Layer];
            var g = attention.Geometry;
            string actual = paths.TryGetValue(attention.Module, out var p) ? p : "";
            if (actual != layer.Attention || g.Heads != layer.NumHeads || g.HeadDim != layer.HeadDim)
            {
                throw new AdapterFormatException(file.ConfigPath, "layers",
                    $"layer {layer.Layer} is '{layer.Attention}' with {layer.NumHeads} heads of {layer.HeadDim}, but this model's is '{actual}' with {g.Heads} heads of {g.HeadDim}; load the file into the model family and size it was saved from.");
            }
        }

        string weightsPath = Path.Combine(directory, AdapterFiles.WeightsFileName);
        if (!File.Exists(weightsPath)) throw new AdapterFormatException(weightsPath, null, "the tensor file is missing; a LoFiT directory holds adapter_config.json and adapter_model.safetensors.");
        using var reader = SafetensorsFile.Open(weightsPath);
        CheckTensors(file, reader, weightsPath);
        var selection = new LoFiTHeadSelection(file.Layers.SelectMany(l => l.Heads.Select(h => new LoFiTHead(l.Layer, h))).ToList());
        var adapters = model.AddLoFiT(file.Config, selection, adapterName ?? file.AdapterName);
        using var noGrad = no_grad();
        foreach (var adapter in adapters)
        {
            var layer = file.Layers.Single(l => l.Layer == adapter.Geometry.Layer);
            if (adapter.Scale is { } a) a.copy_(reader.ReadTensor(LoFiTFile.Key(layer, "lofit_A")));
            if (adapter.Bias is { } v) v.copy_(reader.ReadTensor(LoFiTFile.Key(layer, "lofit_v")));
        }

        return adapters;
    }

    /// <summary>Whether the directory's config names <c>LOFIT</c>.</summary>
    /// <param name="directory">An adapter directory.</param>
    /// <returns>True for a LoFiT directory.</returns>
    public static bool IsLoFiT(string directory)
    {
        string path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        if (!File.Exists(path)) return false;
        var json = JsonFile.ReadObject(path, JsonFileKind.AdapterConfig);
        return json["peft_type"] is JsonValue value && value.GetValueKind() == JsonValueKind.String && value.GetValue<string>() == LoFiTConfig.PeftType;
    }

    /// <summary>Reads and checks a LoFiT directory's config without a model (for <c>peft inspect</c> and <c>peft merge</c>).</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>The file.</returns>
    /// <exception cref="AdapterFormatException">The file is missing, not LoFiT's, or a field is wrong (the message names it).</exception>
    public static LoFiTFile ReadConfig(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        if (!File.Exists(path)) throw new AdapterFormatException(path, null, "the configuration file is missing; a LoFiT directory holds adapter_config.json and adapter_model.safetensors.");
        var fields = new JsonFields(JsonFile.ReadObject(path, JsonFileKind.AdapterConfig), (field, problem) => new AdapterFormatException(path, field, problem));
        string type = fields.RequiredString("peft_type");
        if (type != LoFiTConfig.PeftType) throw fields.Error("peft_type", $"\"peft_type\" is '{type}', not '{LoFiTConfig.PeftType}': this is not a LoFiT directory");
        string name = fields.RequiredString("adapter_name");
        string componentsName = fields.RequiredString("components");
        var components = LoFiTConfig.ParseFileName(componentsName) ?? throw fields.Error("components", $"\"components\" must be \"scale\", \"bias\" or \"scale_and_bias\", not '{componentsName}'");
        var config = new LoFiTConfig(components,
            fields.Required("l1_lambda", (f, k) => f.Number(k, 0, true), "a finite number >= 0"),
            fields.Required("init_std", (f, k) => f.Number(k, 0, true), "a finite number >= 0"));
        if (fields.Node("layers") is not JsonArray array || array.Count == 0) throw fields.Error("layers", "\"layers\" must be a non-empty list of attention entries");
        var layers = new List<LoFiTFileLayer>();
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject obj) throw fields.Error("layers", $"\"layers\"[{i}] must be an object, not {JsonFields.Show(array[i])}");
            var entry = new JsonFields(obj, (field, problem) => new AdapterFormatException(path, $"layers[{i}].{field}", $"in \"layers\"[{i}]: {problem}"));
            int heads = entry.Required("num_heads", (f, k) => f.Int(k, 1, 1 << 16), "an integer from 1 to 65536");
            var selected = ReadInts(entry, "heads", heads);
            var layer = new LoFiTFileLayer(entry.Required("layer", (f, k) => f.Int(k, 0, 1 << 20), "an integer 0 or more"), entry.RequiredString("attention"),
                entry.RequiredString("output_projection"), heads, entry.Required("head_dim", (f, k) => f.Int(k, 1, 1 << 16), "an integer from 1 to 65536"), selected);
            if (layers.Any(l => l.Layer == layer.Layer)) throw fields.Error("layers", $"\"layers\" lists layer {layer.Layer} twice");
            layers.Add(layer);
        }

        return new LoFiTFile(config, name, layers, path);
    }

    /// <summary>
    /// <c>peft merge</c>'s fold: applies <see cref="LoFiTMath.Fold"/> to the output projections the file names, in a base
    /// model's tensors keyed <c>&lt;output_projection&gt;.weight</c> / <c>.bias</c> (the model's own state-dict layout).
    /// </summary>
    /// <param name="directory">The LoFiT directory.</param>
    /// <param name="tensors">The base tensors (changed in place).</param>
    /// <returns>The changed keys.</returns>
    /// <exception cref="AdapterFormatException">A projection's weight is missing or misshapen, or offsets meet a bias-free
    /// projection (the message names the key and the fix); nothing is changed then.</exception>
    public static IReadOnlyList<string> FoldInto(string directory, IDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var file = ReadConfig(directory);
        string weightsPath = Path.Combine(directory, AdapterFiles.WeightsFileName);
        if (!File.Exists(weightsPath)) throw new AdapterFormatException(weightsPath, null, "the tensor file is missing; a LoFiT directory holds adapter_config.json and adapter_model.safetensors.");
        using var reader = SafetensorsFile.Open(weightsPath);
        CheckTensors(file, reader, weightsPath);
        foreach (var layer in file.Layers)
        {
            string weightKey = layer.OutputProjection + ".weight", biasKey = layer.OutputProjection + ".bias";
            if (!tensors.TryGetValue(weightKey, out var weight))
            {
                throw new AdapterFormatException(file.ConfigPath, "layers", $"the base has no '{weightKey}' (layer {layer.Layer}'s output projection); merge into the weights of the model the adapter was trained on.");
            }

            if (weight.dim() != 2 || weight.shape[1] != (long)layer.NumHeads * layer.HeadDim)
            {
                throw new AdapterFormatException(file.ConfigPath, "layers", $"'{weightKey}' is [{string.Join(", ", weight.shape)}]; LoFiT folds into [out, {layer.NumHeads * layer.HeadDim}] " +
                    "(the Linear layout; a Conv1D-layout GPT-2 file stores [in, out]: convert it to the model's state-dict layout first).");
            }

            if (file.Config.HasBias && !tensors.ContainsKey(biasKey))
            {
                throw new AdapterFormatException(file.ConfigPath, "components", $"the base has no '{biasKey}': LoFiT's offsets fold into the output projection's bias and '{layer.OutputProjection}' has none (Llama's o_proj); keep the adapter unmerged.");
            }
        }

        var changed = new List<string>();
        foreach (var layer in file.Layers)
        {
            string weightKey = layer.OutputProjection + ".weight", biasKey = layer.OutputProjection + ".bias";
            using var a = file.Config.HasScale ? reader.ReadTensor(LoFiTFile.Key(layer, "lofit_A")) : null;
            using var v = file.Config.HasBias ? reader.ReadTensor(LoFiTFile.Key(layer, "lofit_v")) : null;
            LoFiTMath.Fold(tensors[weightKey], v is null ? null : tensors[biasKey], layer.Heads, layer.HeadDim, a, v);
            if (a is not null) changed.Add(weightKey);
            if (v is not null) changed.Add(biasKey);
        }

        return changed;
    }

    private static void CheckTensors(LoFiTFile file, SafetensorsReader reader, string weightsPath)
    {
        var expected = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var layer in file.Layers)
        {
            foreach (var name in file.TensorNames) expected[LoFiTFile.Key(layer, name)] = [layer.Heads.Count, layer.HeadDim];
        }

        var found = reader.Tensors.ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);
        var missing = expected.Keys.Where(k => !found.ContainsKey(k)).ToList();
        var unexpected = found.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        var shapes = expected.Where(e => found.TryGetValue(e.Key, out var s) && !s.SequenceEqual(e.Value))
            .Select(e => $"{e.Key}: file [{string.Join(", ", found[e.Key])}], config [{string.Join(", ", e.Value)}]").ToList();
        if (missing.Count + unexpected.Count + shapes.Count > 0)
        {
            throw new TensorMismatchException(weightsPath,
                $"{weightsPath} does not match its adapter_config.json: {missing.Count} missing, {unexpected.Count} unexpected, {shapes.Count} misshapen " +
                $"({string.Join("; ", missing.Concat(unexpected).Concat(shapes).Take(4))}). Save the adapter again with SaveLoFiT.",
                missing, unexpected, shapes);
        }
    }

    private static List<int> ReadInts(JsonFields fields, string key, int heads)
    {
        if (fields.Node(key) is not JsonArray array || array.Count == 0) throw fields.Error(key, $"\"{key}\" must be a non-empty list of head indices");
        var list = new List<int>();
        foreach (var item in array)
        {
            if (item is null || item.GetValueKind() != JsonValueKind.Number || !int.TryParse(item.ToJsonString(), out int h) || h < 0 || h >= heads)
            {
                throw fields.Error(key, $"\"{key}\" must hold head indices from 0 to {heads - 1}, not {JsonFields.Show(item)}");
            }

            list.Add(h);
        }

        if (list.Distinct().Count() != list.Count || !list.SequenceEqual(list.Order())) throw fields.Error(key, $"\"{key}\" must list distinct heads in ascending order");
        return list;
    }
}
