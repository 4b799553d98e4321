using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft.Cli;

/// <summary><c>peft inspect</c> of an adaption-prompt directory (PEFT's <c>ADAPTION_PROMPT</c>): its settings as
/// <see cref="AdaptionPrompts.ReadConfig"/> reads them (a refused setting is shown with the reason), one module per
/// attention with its tensors, and the tensor table.</summary>
internal static class AdaptionPromptReport
{
    public static JsonObject Create(string directory)
    {
        var file = AdapterConfig.Read(Path.Combine(directory, AdapterFiles.ConfigFileName));
        string weights = AdapterDirectory.WeightsPath(directory);
        using var reader = SafetensorsFile.Open(weights);
        var report = new JsonObject
        {
            ["kind"] = "adapter",
            ["path"] = Path.GetFullPath(directory),
            ["peft_type"] = file.PeftType,
            ["method"] = "AdaptionPrompt",
            ["base_model"] = file.BaseModelNameOrPath,
            ["task_type"] = file.TaskType,
        };
        try
        {
            var (config, _, targetModules) = AdaptionPrompts.ReadConfig(directory);
            foreach (var (name, value) in config.Describe()) report[name] = JsonValue.Create(value);
            report["target_modules"] = targetModules;
        }
        catch (AdapterFormatException ex)
        {
            report["settings_error"] = ex.Message;
        }

        var modules = new JsonArray();
        var strays = new List<string>();
        foreach (var group in reader.Tensors.GroupBy(t => AdaptionPrompts.AttentionPathOf(t.Name)))
        {
            if (group.Key is null)
            {
                strays.AddRange(group.Select(t => t.Name));
                continue;
            }

            modules.Add(new JsonObject
            {
                ["module"] = group.Key,
                ["tensors"] = new JsonArray(group.Select(t => t.Name[(group.Key.Length + AdapterFiles.KeyPrefix.Length + 1)..]).Order(StringComparer.Ordinal).Select(n => (JsonNode?)n).ToArray()),
            });
        }

        report["modules"] = modules;
        if (strays.Count > 0) report["unexpected_tensors"] = new JsonArray(strays.Select(n => (JsonNode?)n).ToArray());
        report["weights_file"] = reader.Path;
        var tensors = new JsonArray();
        long count = 0;
        foreach (var info in reader.Tensors)
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
        report["trainable_parameters"] = count;
        return report;
    }
}
