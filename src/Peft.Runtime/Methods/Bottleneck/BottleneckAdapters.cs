using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Inserting, saving and loading bottleneck adapters (<see cref="BottleneckConfig"/>) on any model with a transformer stack
/// whose blocks implement <see cref="ITransformerBlock"/> (every <c>Peft.Models</c> family, or a user's own).
/// </summary>
/// <remarks>
/// Files: PEFT has no bottleneck adapters and the adapters library saves pickles, so a directory holds this library's
/// <c>adapter_config.json</c> (<c>peft_type</c> <c>BOTTLENECK</c>, <c>adapter_name</c>, and the adapters library's
/// <c>BnConfig</c> fields) and <c>adapter_model.safetensors</c> keyed by the adapters library's module layout under the model's
/// own paths: <c>&lt;block&gt;.attention_adapters.adapters.&lt;name&gt;.adapter_down.0.weight</c>, <c>….adapter_down.0.bias</c>,
/// <c>….adapter_up.weight</c>, <c>….adapter_up.bias</c> (<c>output_adapters</c> after the feed-forward sub-layer).
/// </remarks>
public static partial class BottleneckAdapters
{
    /// <summary>The configuration file's name.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>The tensor file's name.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    private static readonly string[] s_tensorNames = ["adapter_down.0.weight", "adapter_down.0.bias", "adapter_up.weight", "adapter_up.bias"];

    /// <summary>
    /// Inserts one bottleneck adapter named <paramref name="adapterName"/> at every chosen sub-layer of every block of the
    /// model's stack, then applies the trainability rule (the adapters train, the base model is frozen).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="config">The configuration.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <returns>The inserted adapters with their paths.</returns>
    /// <exception cref="PeftConfigurationException">The configuration is invalid, the model has no stack or a block offers no
    /// insertion points, or the name is taken; nothing is inserted then.</exception>
    public static IReadOnlyList<(string Path, BottleneckAdapter Adapter)> AddBottleneckAdapters(this nn.Module model, BottleneckConfig config, string adapterName = AdapterNames.Default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        var plan = Plan(model, config, adapterName);
        if (model.InsertedAdapters().Any(a => a.Adapter.AdapterName == adapterName && a.Adapter is BottleneckAdapter))
        {
            throw new PeftConfigurationException(
                $"The model already has bottleneck adapters named '{adapterName}'; pass another adapterName.", null, adapterName);
        }

        var created = plan.Select(p => (p, new BottleneckAdapter(adapterName, config, p.Input, p.Output, p.PointPath))).ToList();
        var rule = config.PhmLayer ? NewRule(config) : null;
        foreach (var (p, adapter) in created)
        {
            var device = p.Device;
            if (device is not null) adapter.to(device);
            if (rule is not null) adapter.Bind(rule);
            p.Block.Insertions.Insert(p.Sublayer, adapter);
        }

        model.ApplyTrainability();
        return created.Select(c => ($"{c.p.PointPath}.adapters.{adapterName}", c.Item2)).ToList();
    }

    /// <summary>Writes the adapter named <paramref name="adapterName"/> to <paramref name="directory"/>
    /// (<see cref="ConfigFileName"/> and <see cref="WeightsFileName"/>).</summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory (created when missing).</param>
    /// <param name="adapterName">The adapter.</param>
    /// <exception cref="PeftConfigurationException">The model has no bottleneck adapter of that name.</exception>
    public static void SaveBottleneckAdapters(this nn.Module model, string directory, string adapterName = AdapterNames.Default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(directory);
        var adapters = model.InsertedAdapters().Where(a => a.Adapter.AdapterName == adapterName && a.Adapter is BottleneckAdapter).ToList();
        if (adapters.Count == 0)
        {
            throw new PeftConfigurationException(
                $"The model has no bottleneck adapter named '{adapterName}' (add one with AddBottleneckAdapters).", null, adapterName);
        }

        var first = (BottleneckAdapter)adapters[0].Adapter;
        var config = first.Config;
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (path, adapter) in adapters)
        {
            foreach (var (name, parameter) in adapter.named_parameters())
            {
                tensors.Add(new($"{path}.{name}", parameter.detach().cpu().contiguous()));
            }
        }

        if (first.SharedTensors is { } shared)
        {
            tensors.Add(new(RuleKey(adapterName), shared[PhmLayer.RuleName].detach().cpu().contiguous()));
        }

        Directory.CreateDirectory(directory);
        SafetensorsFile.Write(Path.Combine(directory, WeightsFileName), tensors);
        foreach (var t in tensors) t.Value.Dispose();
        var json = new JsonObject
        {
            ["peft_type"] = BottleneckConfig.PeftType,
            ["architecture"] = "bottleneck",
            ["adapter_name"] = adapterName,
            ["reduction_factor"] = config.ReductionFactor,
            ["non_linearity"] = config.NonLinearity,
            ["mh_adapter"] = config.MhAdapter,
            ["output_adapter"] = config.OutputAdapter,
            ["is_parallel"] = config.IsParallel,
            ["scaling"] = config.Scaling,
            ["init_weights"] = config.InitWeights,
            ["original_ln_before"] = true,
            ["original_ln_after"] = true,
            ["residual_before_ln"] = true,
            ["ln_before"] = false,
            ["ln_after"] = false,
        };
        if (config.PhmLayer) WritePhmFields(json, config);
        Checkpoints.AtomicFile.WriteAllText(Path.Combine(directory, ConfigFileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// Reads a directory written by <see cref="SaveBottleneckAdapters"/> and inserts its adapter into the model (under its saved
    /// name), checking every field, key and shape before anything is inserted.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory.</param>
    /// <returns>The adapter's name.</returns>
    /// <exception cref="AdapterFormatException">A file is missing or a field is wrong (the message names the file and field).</exception>
    /// <exception cref="TensorMismatchException">The tensors do not match the model's insertion points (missing, unexpected or
    /// misshapen keys, all listed).</exception>
    public static string LoadBottleneckAdapters(this nn.Module model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(directory);
        string configPath = Path.Combine(directory, ConfigFileName);
        string weightsPath = Path.Combine(directory, WeightsFileName);
        var (config, adapterName) = ReadConfig(configPath);
        List<Placement> plan;
        try
        {
            plan = Plan(model, config, adapterName);
        }
        catch (PeftConfigurationException e)
        {
            throw new AdapterFormatException(configPath, null, e.Message, e);
        }

        if (!File.Exists(weightsPath))
        {
            throw new AdapterFormatException(weightsPath, null, "the tensor file is missing; a bottleneck adapter directory holds adapter_config.json and adapter_model.safetensors.");
        }

        using var reader = SafetensorsFile.Open(weightsPath);
        var expected = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var p in plan)
        {
            long r = config.Bottleneck(p.Output);
            string prefix = $"{p.PointPath}.adapters.{adapterName}.";
            if (config.PhmLayer)
            {
                ExpectPhm(expected, prefix, config, p.Input, r, p.Output);
                continue;
            }

            expected[prefix + s_tensorNames[0]] = [r, p.Input];
            expected[prefix + s_tensorNames[1]] = [r];
            expected[prefix + s_tensorNames[2]] = [p.Output, r];
            expected[prefix + s_tensorNames[3]] = [p.Output];
        }

        if (config.PhmLayer) expected[RuleKey(adapterName)] = [config.PhmDim, config.PhmDim, config.PhmDim];

        var found = reader.Tensors.ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);
        var missing = expected.Keys.Where(k => !found.ContainsKey(k)).ToList();
        var unexpected = found.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        var shapes = expected.Where(e => found.TryGetValue(e.Key, out var s) && !s.SequenceEqual(e.Value))
            .Select(e => $"{e.Key}: file [{string.Join(", ", found[e.Key])}], model [{string.Join(", ", e.Value)}]").ToList();
        if (missing.Count + unexpected.Count + shapes.Count > 0)
        {
            throw new TensorMismatchException(weightsPath,
                $"{weightsPath} does not match the model's insertion points for {config.Describe()}: {missing.Count} missing, {unexpected.Count} unexpected, " +
                $"{shapes.Count} misshapen ({string.Join("; ", missing.Concat(unexpected).Concat(shapes).Take(4))}). Load it into the model it was saved from.",
                missing, unexpected, shapes);
        }

        var inserted = model.AddBottleneckAdapters(config, adapterName);
        using (no_grad())
        {
            foreach (var (path, adapter) in inserted)
            {
                foreach (var (name, parameter) in adapter.named_parameters())
                {
                    using var value = reader.ReadTensor($"{path}.{name}");
                    parameter.copy_(value);
                }
            }

            if (inserted.Count > 0 && inserted[0].Adapter.SharedTensors is { } shared)
            {
                using var value = reader.ReadTensor(RuleKey(adapterName));
                shared[PhmLayer.RuleName].copy_(value);
            }
        }

        return adapterName;
    }

    /// <summary>Whether <paramref name="directory"/> holds a bottleneck adapter (its <see cref="ConfigFileName"/> says
    /// <c>peft_type</c> <c>BOTTLENECK</c>); false for a missing or unreadable file.</summary>
    /// <param name="directory">A directory.</param>
    /// <returns>True for a bottleneck adapter directory.</returns>
    public static bool IsBottleneckDirectory(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path)) return false;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) is JsonObject json && json["peft_type"] is JsonValue v && v.TryGetValue(out string? type) && type == BottleneckConfig.PeftType;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>Reads and checks the configuration of a directory written by <see cref="SaveBottleneckAdapters"/> without a
    /// model (e.g. <c>peft inspect</c>).</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>The configuration and the adapter's name.</returns>
    /// <exception cref="AdapterFormatException">The file is missing or a field is wrong (named).</exception>
    public static (BottleneckConfig Config, string AdapterName) ReadConfigFile(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        return ReadConfig(Path.Combine(directory, ConfigFileName));
    }

    private static (BottleneckConfig Config, string AdapterName) ReadConfig(string path)
    {
        if (!File.Exists(path))
        {
            throw new AdapterFormatException(path, null, "the configuration file is missing; a bottleneck adapter directory holds adapter_config.json and adapter_model.safetensors.");
        }

        var fields = JsonFields.ReadAdapterConfig(path);
        string type = fields.RequiredString("peft_type");
        if (type != BottleneckConfig.PeftType)
        {
            throw new AdapterFormatException(path, "peft_type", $"\"peft_type\" is '{type}', not '{BottleneckConfig.PeftType}': load PEFT adapters with LoadAdapter, bottleneck adapters with LoadBottleneckAdapters.");
        }

        foreach (var (field, wanted) in new[] { ("original_ln_before", true), ("original_ln_after", true), ("residual_before_ln", true), ("ln_before", false), ("ln_after", false) })
        {
            if (fields.Has(field) && fields.RequiredBool(field) != wanted)
            {
                throw new AdapterFormatException(path, field, $"\"{field}\" is {(!wanted).ToString().ToLowerInvariant()}; this library inserts adapters only with the adapters library's default {field} = {wanted.ToString().ToLowerInvariant()}.");
            }
        }

        var config = new BottleneckConfig(
            fields.RequiredNumber("reduction_factor"), fields.RequiredString("non_linearity"), fields.RequiredBool("mh_adapter"), fields.RequiredBool("output_adapter"),
            fields.RequiredBool("is_parallel"), fields.RequiredNumber("scaling"), fields.RequiredString("init_weights"));
        if (fields.Has("phm_layer") && fields.RequiredBool("phm_layer")) config = ReadPhmFields(fields, path, config);
        try
        {
            config.Validate();
        }
        catch (PeftConfigurationException e)
        {
            throw new AdapterFormatException(path, null, e.Message, e);
        }

        return (config, fields.RequiredString("adapter_name"));
    }

    private sealed record Placement(ITransformerBlock Block, Sublayer Sublayer, string PointPath, long Input, long Output, Device? Device);

    private static List<Placement> Plan(nn.Module model, BottleneckConfig config, string adapterName)
    {
        AdapterNameRules.Validate(adapterName, null);
        var (_, blocks) = TransformerBlocks.Find(model);
        var paths = ModuleTree.Walk(model).ToDictionary(n => (object)n.Module, n => n.Path, ReferenceEqualityComparer.Instance);
        var plan = new List<Placement>();
        foreach (var block in blocks)
        {
            var module = (nn.Module)block;
            string blockPath = paths[module];
            var device = module.parameters().FirstOrDefault()?.device;
            foreach (var sublayer in new[] { Sublayer.Attention, Sublayer.FeedForward })
            {
                if (sublayer == Sublayer.Attention ? !config.MhAdapter : !config.OutputAdapter) continue;
                var (input, output) = block.Insertions.Features(sublayer);
                string point = (blockPath.Length == 0 ? "" : blockPath + ".") + SublayerInsertionPoint.ModuleName(sublayer);
                if (config.Bottleneck(output) < 1)
                {
                    throw new PeftConfigurationException(
                        $"Bottleneck adapter '{adapterName}' at {point}: reduction_factor = {BottleneckConfig.Show(config.ReductionFactor)} leaves no feature of the " +
                        $"{output}-wide output; use a reduction_factor of at most {output}.", null, adapterName);
                }

                long reads = config.IsParallel ? input : output;
                if (config.PhmLayer) CheckPhmWidths(config, adapterName, point, reads, output);
                plan.Add(new Placement(block, sublayer, point, reads, output, device));
            }
        }

        return plan;
    }
}
