using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft.Cli;

/// <summary>
/// <c>peft inspect</c> on a bottleneck adapter directory (<c>peft_type</c> <c>BOTTLENECK</c>: Houlsby, Pfeiffer, parallel,
/// Compacter): the configuration as <see cref="BottleneckAdapters.ReadConfigFile"/> reads it (the same checks a load runs),
/// the insertion points with their tensors, the shared tensors (Compacter's rule) and the trainable count: every tensor of
/// the file trains, the shared rule once.
/// </summary>
internal static class BottleneckInspection
{
    public static JsonObject Report(string directory)
    {
        BottleneckConfig config;
        string adapterName;
        try
        {
            (config, adapterName) = BottleneckAdapters.ReadConfigFile(directory);
        }
        catch (AdapterFormatException ex)
        {
            throw CliException.Failure(ex.Message);
        }

        string weights = Path.Combine(directory, BottleneckAdapters.WeightsFileName);
        if (!File.Exists(weights))
        {
            throw CliException.Failure($"{weights}: the tensor file is missing; a bottleneck adapter directory holds {BottleneckAdapters.ConfigFileName} and {BottleneckAdapters.WeightsFileName}.");
        }

        using var reader = SafetensorsFile.Open(weights);
        var report = new JsonObject
        {
            ["kind"] = "adapter",
            ["path"] = Path.GetFullPath(directory),
            ["peft_type"] = BottleneckConfig.PeftType,
            ["method"] = config.PhmLayer ? "compacter" : "bottleneck",
            ["adapter_name"] = adapterName,
            ["reduction_factor"] = config.ReductionFactor,
            ["non_linearity"] = config.NonLinearity,
            ["mh_adapter"] = config.MhAdapter,
            ["output_adapter"] = config.OutputAdapter,
            ["is_parallel"] = config.IsParallel,
            ["scaling"] = config.Scaling,
            ["init_weights"] = config.InitWeights,
            ["mergeable"] = false,
        };
        if (config.PhmLayer)
        {
            report["phm_dim"] = config.PhmDim;
            report["phm_rank"] = config.PhmRank;
            report["phm_init_range"] = config.PhmInitRange;
        }

        // Tensors are keyed <insertion point>.adapters.<name>.<tensor>; the shared rule is shared_parameters.<name>.phm_rule.
        string marker = $".adapters.{adapterName}.";
        var modules = new JsonArray();
        foreach (var group in reader.Tensors.Where(t => t.Name.Contains(marker, StringComparison.Ordinal))
                     .GroupBy(t => t.Name[..t.Name.IndexOf(marker, StringComparison.Ordinal)], StringComparer.Ordinal))
        {
            modules.Add(new JsonObject
            {
                ["module"] = group.Key,
                ["parameters"] = group.Sum(t => t.ElementCount),
                ["tensors"] = new JsonArray(group.Select(t => t.Name[(group.Key.Length + marker.Length)..]).Order(StringComparer.Ordinal).Select(n => (JsonNode?)n).ToArray()),
            });
        }

        report["modules"] = modules;
        var shared = reader.Tensors.Where(t => !t.Name.Contains(marker, StringComparison.Ordinal)).ToList();
        report["shared_tensors"] = new JsonArray(shared.Select(t => (JsonNode?)t.Name).ToArray());
        report["shared_parameters"] = shared.Sum(t => t.ElementCount);
        report["weights_file"] = reader.Path;
        InspectCommand.AddTensors(report, reader.Tensors, "trainable_parameters");
        report["insertion_points"] = modules.Count;
        return report;
    }
}
