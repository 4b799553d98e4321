using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Saving and loading MEFT (<see cref="Meft"/>). MEFT is not in PEFT and the authors save whole models, so a directory holds
/// this library's <c>adapter_config.json</c> (<c>peft_type</c> <c>MEFT</c>, <c>adapter_name</c> and the authors' config
/// fields <c>f_arch</c>, <c>x1_factor</c>, <c>x2_factor</c>, <c>adapter_bottleneck_dim</c>, <c>num_rev_layers</c>,
/// <c>hidden_act</c>, plus <c>adapter_dropout</c> and <c>layernorm_in_adapter</c>) and <c>adapter_model.safetensors</c> with
/// the adapters under the model's own paths: <c>&lt;block&gt;.rev_adapters.&lt;name&gt;.dense1.weight</c>, <c>….dense1.bias</c>,
/// <c>….dense2.weight</c>, <c>….dense2.bias</c> (<c>….LayerNorm.weight</c>/<c>.bias</c> with a LayerNorm) and
/// <c>&lt;block&gt;.output_adapters.adapters.&lt;name&gt;.dense1.weight</c> … for the feed-forward adapter.
/// </summary>
public static class MeftFiles
{
    /// <summary>The configuration file's name.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>The tensor file's name.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>Writes the model's MEFT adapter to <paramref name="directory"/>.</summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory (created when missing).</param>
    /// <exception cref="PeftConfigurationException">The model has no MEFT.</exception>
    public static void SaveMeft(this nn.Module model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(directory);
        var runner = model.MeftOf() ?? throw new PeftConfigurationException("The model has no MEFT adapter (add one with AddMeft).", null, null);
        var tensors = Tensors(model, runner).Select(t => new KeyValuePair<string, Tensor>(t.Key, t.Value.detach().cpu().contiguous())).ToList();
        Directory.CreateDirectory(directory);
        SafetensorsFile.Write(Path.Combine(directory, WeightsFileName), tensors);
        foreach (var t in tensors) t.Value.Dispose();
        var c = runner.Config;
        var json = new JsonObject
        {
            ["peft_type"] = MeftConfig.PeftType,
            ["adapter_name"] = runner.AdapterName,
            ["f_arch"] = MeftConfig.FArch(c.Variant),
            ["x1_factor"] = c.X1Factor,
            ["x2_factor"] = c.X2Factor,
            ["adapter_bottleneck_dim"] = c.AdapterBottleneckDim,
            ["num_rev_layers"] = c.NumRevLayers,
            ["hidden_act"] = c.HiddenAct,
            ["adapter_dropout"] = c.AdapterDropout,
            ["layernorm_in_adapter"] = c.LayernormInAdapter,
        };
        Checkpoints.AtomicFile.WriteAllText(Path.Combine(directory, ConfigFileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// Reads a directory written by <see cref="SaveMeft"/> and adds its MEFT to the model (under its saved name), checking
    /// every field, key and shape before anything is added.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory.</param>
    /// <returns>The runner.</returns>
    /// <exception cref="AdapterFormatException">A file is missing, a field is wrong, or the model cannot take the adapter
    /// (the message names the file and field).</exception>
    /// <exception cref="TensorMismatchException">The tensors do not match the model's blocks (all differences counted).</exception>
    public static MeftRunner LoadMeft(this nn.Module model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(directory);
        string configPath = Path.Combine(directory, ConfigFileName);
        string weightsPath = Path.Combine(directory, WeightsFileName);
        var (config, adapterName) = ReadConfig(configPath);
        Meft.Placement plan;
        try
        {
            plan = Meft.Plan(model, config, adapterName);
        }
        catch (PeftConfigurationException e)
        {
            throw new AdapterFormatException(configPath, null, e.Message, e);
        }

        if (!File.Exists(weightsPath))
        {
            throw new AdapterFormatException(weightsPath, null, "the tensor file is missing; a MEFT directory holds adapter_config.json and adapter_model.safetensors.");
        }

        using var reader = SafetensorsFile.Open(weightsPath);
        var expected = Expected(plan, config, adapterName);
        var found = reader.Tensors.ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);
        var missing = expected.Keys.Where(k => !found.ContainsKey(k)).ToList();
        var unexpected = found.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        var shapes = expected.Where(e => found.TryGetValue(e.Key, out var s) && !s.SequenceEqual(e.Value))
            .Select(e => $"{e.Key}: file [{string.Join(", ", found[e.Key])}], model [{string.Join(", ", e.Value)}]").ToList();
        if (missing.Count + unexpected.Count + shapes.Count > 0)
        {
            throw new TensorMismatchException(weightsPath,
                $"{weightsPath} does not match the model's blocks for {config.Describe()}: {missing.Count} missing, {unexpected.Count} unexpected, " +
                $"{shapes.Count} misshapen ({string.Join("; ", missing.Concat(unexpected).Concat(shapes).Take(4))}). Load it into the model it was saved from.",
                missing, unexpected, shapes);
        }

        var runner = model.AddMeft(config, adapterName);
        using (no_grad())
        {
            foreach (var (key, parameter) in Tensors(model, runner))
            {
                using var value = reader.ReadTensor(key);
                parameter.copy_(value);
            }
        }

        return runner;
    }

    /// <summary>Whether <paramref name="directory"/> holds a MEFT adapter: its configuration file's <c>peft_type</c> is
    /// <c>MEFT</c> (a file that cannot be read is not one; the caller's own reader reports it).</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>True for a MEFT directory.</returns>
    public static bool IsMeftDirectory(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path)) return false;
        try
        {
            return JsonFile.ReadObject(path, JsonFileKind.AdapterConfig)["peft_type"] is JsonValue v && v.TryGetValue(out string? type) && type == MeftConfig.PeftType;
        }
        catch (AdapterFormatException)
        {
            return false;
        }
    }

    /// <summary>Reads and checks a MEFT directory's configuration (every field named on error).</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>The configuration and the adapter's name.</returns>
    /// <exception cref="AdapterFormatException">The file is missing or a field is wrong.</exception>
    public static (MeftConfig Config, string AdapterName) ReadMeftConfig(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        return ReadConfig(Path.Combine(directory, ConfigFileName));
    }

    /// <summary>The adapter's tensors by file key.</summary>
    private static IEnumerable<KeyValuePair<string, Tensor>> Tensors(nn.Module model, MeftRunner runner)
    {
        var paths = ModuleTree.Walk(model).ToDictionary(n => (object)n.Module, n => n.Path, ReferenceEqualityComparer.Instance);
        foreach (var adapter in model.InsertedAdapters().Select(a => a.Adapter).OfType<MeftAdapter>().Where(a => a.AdapterName == runner.AdapterName))
        {
            foreach (var (name, parameter) in adapter.named_parameters())
            {
                yield return new($"{paths[adapter]}.{name}", parameter);
            }
        }
    }

    private static Dictionary<string, long[]> Expected(Meft.Placement plan, MeftConfig config, string adapterName)
    {
        long r = config.AdapterBottleneckDim;
        var expected = new Dictionary<string, long[]>(StringComparer.Ordinal);
        for (int i = 0; i < plan.Blocks.Count; i++)
        {
            long d = plan.Blocks[i].Width;
            string block = plan.BlockPaths[i].Length == 0 ? "" : plan.BlockPaths[i] + ".";
            foreach (var (prefix, norm) in new[] { ($"{block}{Meft.ReversibleAdaptersName}.{adapterName}.", config.LayernormInAdapter), ($"{block}output_adapters.adapters.{adapterName}.", false) })
            {
                expected[prefix + "dense1.weight"] = [r, d];
                expected[prefix + "dense1.bias"] = [r];
                expected[prefix + "dense2.weight"] = [d, r];
                expected[prefix + "dense2.bias"] = [d];
                if (norm)
                {
                    expected[prefix + "LayerNorm.weight"] = [d];
                    expected[prefix + "LayerNorm.bias"] = [d];
                }
            }
        }

        return expected;
    }

    private static (MeftConfig Config, string AdapterName) ReadConfig(string path)
    {
        if (!File.Exists(path))
        {
            throw new AdapterFormatException(path, null, "the configuration file is missing; a MEFT directory holds adapter_config.json and adapter_model.safetensors.");
        }

        var fields = JsonFields.ReadAdapterConfig(path);
        string type = fields.RequiredString("peft_type");
        if (type != MeftConfig.PeftType)
        {
            throw new AdapterFormatException(path, "peft_type", $"\"peft_type\" is '{type}', not '{MeftConfig.PeftType}': load PEFT adapters with LoadAdapter, MEFT with LoadMeft.");
        }

        string fArch = fields.RequiredString("f_arch");
        var variant = MeftConfig.FromFArch(fArch) ?? throw new AdapterFormatException(path, "f_arch", $"\"f_arch\" is '{fArch}', not 'layer' (MEFT1), 'adapter' (MEFT2) or 'attn' (MEFT3).");
        int? numRev = !fields.Has("num_rev_layers") ? null : fields.RequiredInt("num_rev_layers");
        var config = new MeftConfig(variant, fields.RequiredNumber("x1_factor"), fields.RequiredNumber("x2_factor"), fields.RequiredInt("adapter_bottleneck_dim"),
            numRev, fields.RequiredString("hidden_act"), fields.RequiredNumber("adapter_dropout"), fields.RequiredBool("layernorm_in_adapter"));
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

}
