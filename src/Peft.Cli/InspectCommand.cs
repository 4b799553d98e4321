using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training.Checkpoints;

namespace Peft.Cli;

/// <summary><c>peft inspect PATH [--json]</c>: an adapter directory, a checkpoint directory or a safetensors file, detected by content.</summary>
internal static class InspectCommand
{
    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var pathArgument = new Argument<string>("path") { Description = "An adapter directory, a training checkpoint directory (step-N) or a safetensors file." };
        var jsonOption = new Option<bool>("--json") { Description = "Write one JSON object instead of text." };
        var command = new Command("inspect", "Show what an adapter, a checkpoint or a safetensors file holds: method, targets, tensors with shapes and dtypes, parameter counts.")
        {
            pathArgument, jsonOption,
        };
        command.SetAction(parse =>
        {
            var report = Inspect(parse.GetRequiredValue(pathArgument));
            var writer = parse.InvocationConfiguration.Output;
            writer.Write(parse.GetValue(jsonOption) ? report.ToJsonString(s_json) + Environment.NewLine : RenderText(report));
            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>Builds the report (the <c>--json</c> output) for <paramref name="path"/>.</summary>
    internal static JsonObject Inspect(string path)
    {
        if (File.Exists(path))
        {
            // A config or manifest file stands for its directory.
            string name = Path.GetFileName(path);
            string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            if (name == AdapterFiles.ConfigFileName) return PrefixTuningFile.IsPrefixTuning(dir) ? Prefix(dir) : BottleneckAdapters.IsBottleneckDirectory(dir) ? BottleneckInspection.Report(dir) : LoFiTCli.IsLoFiT(dir) ? LoFiTCli.Report(dir) : MeftInspect.IsMeft(dir) ? Meft(dir) : Adapter(dir);
            if (name == CheckpointStore.ManifestFileName) return Checkpoint(dir);
            return Safetensors(path);
        }

        if (!Directory.Exists(path))
        {
            throw CliException.Usage($"{path}: no such file or directory.");
        }

        if (PrefixTuningFile.IsPrefixTuning(path)) return Prefix(path);
        if (BottleneckAdapters.IsBottleneckDirectory(path)) return BottleneckInspection.Report(path);
        if (LoFiTCli.IsLoFiT(path)) return LoFiTCli.Report(path);
        if (MeftInspect.IsMeft(path)) return Meft(path);
        if (AdapterDirectory.IsAdapter(path)) return Adapter(path);
        if (File.Exists(Path.Combine(path, CheckpointStore.ManifestFileName))) return Checkpoint(path);

        var hints = new List<string>();
        var store = new CheckpointStore(Directory.Exists(Path.Combine(path, "checkpoints")) ? Path.Combine(path, "checkpoints") : path);
        if (store.Latest() is { } latest) hints.Add($"latest checkpoint: {latest}");
        hints.AddRange(Directory.EnumerateDirectories(path).Where(AdapterDirectory.IsAdapter).OrderBy(d => d, StringComparer.Ordinal).Select(d => $"adapter: {d}"));
        string adapters = Path.Combine(path, "adapters");
        if (Directory.Exists(adapters))
        {
            hints.AddRange(Directory.EnumerateDirectories(adapters).Where(AdapterDirectory.IsAdapter).OrderBy(d => d, StringComparer.Ordinal).Select(d => $"adapter: {d}"));
        }

        throw CliException.Usage($"{path}: not an adapter directory ({AdapterFiles.ConfigFileName}), a checkpoint directory ({CheckpointStore.ManifestFileName}) or a safetensors file"
            + (hints.Count > 0 ? "; inside: " + string.Join("; ", hints) : "."));
    }

    private static JsonObject Prefix(string directory)
    {
        PrefixTuningFile file;
        try
        {
            file = PrefixTuningFile.Read(directory);
        }
        catch (AdapterFormatException ex)
        {
            throw CliException.Failure(ex.Message);
        }

        var report = new JsonObject
        {
            ["kind"] = "adapter",
            ["path"] = Path.GetFullPath(directory),
            ["peft_type"] = PrefixTuningConfig.PeftType,
            ["method"] = "PrefixTuning",
            ["base_model"] = file.BaseModel,
            ["task_type"] = file.TaskType,
            ["num_virtual_tokens"] = file.VirtualTokens,
            ["num_layers"] = file.Layers,
            ["num_attention_heads"] = file.Heads,
            ["token_dim"] = file.TokenDim,
            ["prefix_projection"] = file.Projection,
            ["encoder_hidden_size"] = file.EncoderHiddenSize,
        };
        using var reader = SafetensorsFile.Open(file.WeightsPath);
        AddTensors(report, reader.Tensors, "parameters");
        return report;
    }

    private static JsonObject Adapter(string directory)
    {
        if (AdaptionPrompts.IsAdaptionPrompt(directory)) return AdaptionPromptReport.Create(directory);
        var (config, method) = AdapterDirectory.ReadConfig(directory);
        string weights = AdapterDirectory.WeightsPath(directory);
        using var reader = SafetensorsFile.Open(weights);
        var report = new JsonObject
        {
            ["kind"] = "adapter",
            ["path"] = Path.GetFullPath(directory),
            ["peft_type"] = config.PeftType,
            ["method"] = method.Name,
            ["base_model"] = config.BaseModelNameOrPath,
            ["task_type"] = config.TaskType,
        };
        report["modules_to_save"] = config.ModulesToSave.Count > 0 ? new JsonArray(config.ModulesToSave.Select(n => (JsonNode?)n).ToArray()) : null;

        // The settings as the method reads them (the same code a model's load runs); a file whose settings the method
        // refuses is still shown, with the reason.
        if (Settings(config, method, null, out string? error) is { } settings)
        {
            foreach (var (name, value) in settings) report[name] = value;
        }
        else
        {
            report["settings_error"] = error;
        }

        if (method.IsPromptLearning)
        {
            report["token_dim"] = config.Raw["token_dim"]?.DeepClone();
        }
        else
        {
            report["target_modules"] = config.TargetModulesRegex is { } regex ? JsonValue.Create(regex) : new JsonArray(config.TargetModules.Select(t => (JsonNode?)t).ToArray());
            report["rank_pattern"] = new JsonObject(config.RankPattern.Select(p => new KeyValuePair<string, JsonNode?>(p.Key, p.Value)));
            report["alpha_pattern"] = new JsonObject(config.AlphaPattern.Select(p => new KeyValuePair<string, JsonNode?>(p.Key, JsonNumber(p.Value))));
            var modules = new JsonArray();
            foreach (var module in AdapterDirectory.Modules(reader, config, method))
            {
                var entry = new JsonObject { ["module"] = module.ModulePath };
                if (Settings(config, method, module.ModulePath, out string? moduleError) is { } moduleSettings)
                {
                    foreach (var (name, value) in moduleSettings) entry[name] = value;
                }
                else
                {
                    entry["settings_error"] = moduleError;
                }

                entry["tensors"] = new JsonArray(module.Tensors.Keys.Order(StringComparer.Ordinal).Select(k => (JsonNode?)k).ToArray());
                modules.Add(entry);
            }

            report["modules"] = modules;
        }

        var savedModules = new JsonArray();
        foreach (var module in AdapterDirectory.SavedModules(reader, config, method))
        {
            savedModules.Add(new JsonObject
            {
                ["module"] = module.ModulePath,
                ["tensors"] = new JsonArray(module.Tensors.Keys.Order(StringComparer.Ordinal).Select(k => (JsonNode?)k).ToArray()),
                ["parameters"] = module.Tensors.Values.Sum(k => reader.GetInfo(k).ElementCount),
            });
        }

        report["saved_modules"] = savedModules;
        report["weights_file"] = reader.Path;
        AddTensors(report, reader.Tensors, "trainable_parameters");
        if (method.SharedTensorNames.Count > 0)
        {
            // Model-level frozen tensors (VeRA's projections) are in the file but never train; trainable ones (VB-LoRA's
            // vector bank) count once, as in the model.
            var shared = reader.Tensors.Where(t => AdapterDirectory.IsSharedTensor(t.Name, method)).ToList();
            long frozen = shared.Where(t => !method.TrainableSharedTensorNames.Any(n => t.Name == SharedAdapterTensors.KeyPrefix + n)).Sum(t => t.ElementCount);
            report["shared_tensors"] = new JsonArray(shared.Select(t => (JsonNode?)t.Name).ToArray());
            report["frozen_shared_parameters"] = frozen;
            report["trainable_parameters"] = (long)report["trainable_parameters"]! - frozen;
        }

        return report;
    }

    /// <summary>The options the method reads for a module (or the adapter), as JSON values; null with the reason when the
    /// method refuses them.</summary>
    private static List<(string Name, JsonNode? Value)>? Settings(AdapterConfig config, PeftMethod method, string? modulePath, out string? error)
    {
        try
        {
            error = null;
            return method.ReadOptions(config, modulePath).Describe().Select(d => (d.Name, ToJson(d.Value))).ToList();
        }
        catch (AdapterFormatException ex)
        {
            error = ex.Message;
            return null;
        }
    }

    /// <summary>A setting as JSON; a number JSON cannot hold (NaN, infinity) becomes its text, so a report never fails.</summary>
    private static JsonNode? ToJson(object? value) => value switch
    {
        null => null,
        double d => JsonNumber(d),
        float f => JsonNumber(f),
        int i => i,
        long l => l,
        bool b => b,
        string text => text,
        _ => value.ToString(),
    };

    private static JsonNode JsonNumber(double value)
        => double.IsFinite(value) ? JsonValue.Create(value) : JsonValue.Create(value.ToString(CultureInfo.InvariantCulture))!;

    private static JsonObject Checkpoint(string directory)
    {
        var manifest = CheckpointStore.ReadManifest(directory);
        string parameters = Path.Combine(directory, CheckpointStore.ParametersFileName);
        using var reader = SafetensorsFile.Open(parameters);
        var files = new JsonArray();
        foreach (var (name, entry) in manifest.Files.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            files.Add(new JsonObject { ["name"] = name, ["bytes"] = entry.Bytes, ["sha256"] = entry.Sha256 });
        }

        var report = new JsonObject
        {
            ["kind"] = "checkpoint",
            ["path"] = Path.GetFullPath(directory),
            ["step"] = manifest.Step,
            ["total_steps"] = manifest.TotalSteps,
            ["skipped_steps"] = manifest.SkippedSteps,
            ["optimizer"] = manifest.Optimizer ?? Peft.Training.AdamWOptimizer.KindName, // checkpoints that name none are AdamW's
            ["last_loss"] = manifest.LastLoss is double loss ? JsonNumber(loss) : null,
            ["next_learning_rate"] = JsonNumber(manifest.NextLearningRate),
            ["data_position"] = manifest.DataPosition,
            ["created_utc"] = manifest.CreatedUtc.ToString("O", CultureInfo.InvariantCulture),
            ["has_sampler_state"] = manifest.HasSamplerState,
            ["files"] = files,
        };
        AddTensors(report, reader.Tensors, "trainable_parameters");
        return report;
    }

    private static JsonObject Meft(string directory) =>
        MeftInspect.Report(directory, (report, infos) => AddTensors(report, infos, "trainable_parameters"));

    private static JsonObject Safetensors(string path)
    {
        using var reader = SafetensorsFile.Open(path);
        var report = new JsonObject
        {
            ["kind"] = "safetensors",
            ["path"] = reader.Path,
            ["bytes"] = new FileInfo(reader.Path).Length,
            ["metadata"] = new JsonObject(reader.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => new KeyValuePair<string, JsonNode?>(m.Key, m.Value))),
        };
        var merged = MergedAdapterMetadata.Read(reader);
        if (merged.Count > 0)
        {
            // A merged export: the adapters its weights already contain (loading one of them again is refused).
            report["merged_adapters"] = new JsonArray(merged.Select(r => (JsonNode?)new JsonObject
            {
                ["name"] = r.Name,
                ["peft_type"] = r.PeftType,
                ["sha256"] = r.Sha256,
            }).ToArray());
        }

        AddTensors(report, reader.Tensors, "parameters");
        return report;
    }

    internal static void AddTensors(JsonObject report, IReadOnlyList<SafetensorsTensorInfo> infos, string countName)
    {
        var tensors = new JsonArray();
        long count = 0;
        foreach (var info in infos)
        {
            tensors.Add(new JsonObject
            {
                ["name"] = info.Name,
                ["dtype"] = info.DType.ToHeaderString(),
                ["shape"] = new JsonArray(info.Shape.Select(d => (JsonNode?)d).ToArray()),
            });
            count += info.ElementCount;
        }

        report["tensors"] = tensors;
        report[countName] = count;
    }

    /// <summary>The human-readable form of a report: one "key: value" line per scalar, then the tensor table.</summary>
    internal static string RenderText(JsonObject report)
    {
        var text = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        text.Append(inv, $"{Scalar(report["kind"])}: {Scalar(report["path"])}\n");
        foreach (var (key, value) in report)
        {
            if (key is "kind" or "path" or "tensors" or "modules" or "saved_modules" or "files" or "trainable_parameters" or "parameters" or "merged_adapters") continue;
            text.Append(inv, $"  {key}: {Scalar(value)}\n");
        }

        if (report["files"] is JsonArray files)
        {
            text.Append(inv, $"  files ({files.Count}):\n");
            foreach (var f in files) text.Append(inv, $"    {Scalar(f!["name"])}  {Scalar(f["bytes"])} bytes  sha256 {Scalar(f["sha256"])}\n");
        }

        if (report["modules"] is JsonArray modules)
        {
            text.Append(inv, $"  modules ({modules.Count}):\n");
            foreach (var m in modules)
            {
                var settings = m!.AsObject().Where(p => p.Key is not ("module" or "tensors")).Select(p => $"{p.Key} {Scalar(p.Value)}");
                text.Append(inv, $"    {Scalar(m["module"])}  {string.Join("  ", settings)}\n");
            }
        }

        if (report["merged_adapters"] is JsonArray mergedAdapters)
        {
            text.Append(inv, $"  merged adapters ({mergedAdapters.Count}, already in these weights):\n");
            foreach (var m in mergedAdapters) text.Append(inv, $"    {Scalar(m!["name"])}  {Scalar(m["peft_type"])}  sha256 {Scalar(m["sha256"])}\n");
        }

        if (report["saved_modules"] is JsonArray saved && saved.Count > 0)
        {
            text.Append(inv, $"  saved modules ({saved.Count}, modules_to_save: replace the base module):\n");
            foreach (var m in saved) text.Append(inv, $"    {Scalar(m!["module"])}  {Scalar(m["tensors"])}  {Scalar(m["parameters"])} parameters\n");
        }

        var tensors = (JsonArray)report["tensors"]!;
        int width = tensors.Select(t => t!["name"]!.GetValue<string>().Length).DefaultIfEmpty(0).Max();
        text.Append(inv, $"  tensors ({tensors.Count}):\n");
        foreach (var t in tensors)
        {
            string shape = "[" + string.Join(", ", t!["shape"]!.AsArray().Select(d => d!.GetValue<long>().ToString(inv))) + "]";
            text.Append(inv, $"    {t["name"]!.GetValue<string>().PadRight(width)}  {Scalar(t["dtype"]),-4}  {shape}\n");
        }

        string countName = report.ContainsKey("trainable_parameters") ? "trainable_parameters" : "parameters";
        text.Append(inv, $"  {countName.Replace('_', ' ')}: {report[countName]!.GetValue<long>().ToString("N0", inv)}\n");
        return text.ToString();
    }

    private static string Scalar(JsonNode? node) => node switch
    {
        null => "(none)",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.ToJsonString(),
        JsonArray a => string.Join(", ", a.Select(Scalar)),
        JsonObject o when o.Count == 0 => "{}",
        _ => node.ToJsonString(),
    };
}
