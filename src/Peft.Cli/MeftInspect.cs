using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft.Cli;

/// <summary><c>peft inspect</c> and <c>peft merge</c> on a MEFT directory (<see cref="MeftFiles"/>: this library's own format,
/// <c>peft_type</c> <c>MEFT</c>), which PEFT's method registry does not know.</summary>
internal static class MeftInspect
{
    /// <summary>Whether <paramref name="directory"/> holds a MEFT adapter (its config's <c>peft_type</c> is <c>MEFT</c>).</summary>
    public static bool IsMeft(string directory) => MeftFiles.IsMeftDirectory(directory);

    /// <summary>The report: the config's fields as the authors name them, the blocks, and the tensors.</summary>
    public static JsonObject Report(string directory, Action<JsonObject, IReadOnlyList<SafetensorsTensorInfo>> addTensors)
    {
        var (config, adapterName) = MeftFiles.ReadMeftConfig(directory);
        string weights = Path.Combine(directory, MeftFiles.WeightsFileName);
        if (!File.Exists(weights))
        {
            throw CliException.Failure($"{weights}: the tensor file is missing; a MEFT directory holds {MeftFiles.ConfigFileName} and {MeftFiles.WeightsFileName}.");
        }

        using var reader = SafetensorsFile.Open(weights);
        var report = new JsonObject
        {
            ["kind"] = "adapter",
            ["path"] = Path.GetFullPath(directory),
            ["peft_type"] = MeftConfig.PeftType,
            ["method"] = "MEFT",
        };
        report["adapter_name"] = adapterName;
        report["f_arch"] = MeftConfig.FArch(config.Variant);
        report["x1_factor"] = config.X1Factor;
        report["x2_factor"] = config.X2Factor;
        report["adapter_bottleneck_dim"] = config.AdapterBottleneckDim;
        report["num_rev_layers"] = config.NumRevLayers is { } n ? n : "all";
        report["hidden_act"] = config.HiddenAct;
        report["adapter_dropout"] = config.AdapterDropout;
        report["layernorm_in_adapter"] = config.LayernormInAdapter;

        string marker = "." + Meft.ReversibleAdaptersName + ".";
        report["reversible_blocks"] = reader.Tensors.Select(t => t.Name).Where(n => n.Contains(marker, StringComparison.Ordinal))
            .Select(n => n[..n.IndexOf(marker, StringComparison.Ordinal)]).Distinct(StringComparer.Ordinal).Count();
        report["mergeable"] = false;
        addTensors(report, reader.Tensors);
        return report;
    }

    /// <summary>The refusal <c>peft merge</c> gives a MEFT directory.</summary>
    public static CliException MergeRefusal(string directory) => CliException.Usage(
        $"{directory}: a MEFT adapter (peft_type MEFT) changes how the model's blocks run together (a reversible stack), so no weight can absorb it; " +
        "load it with model.LoadMeft(directory) instead of merging.");
}
