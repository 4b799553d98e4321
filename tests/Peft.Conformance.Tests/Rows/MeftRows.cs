using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>MEFT's rows (reversible adapters run by the stack's runner, <see cref="Meft"/>), on <see cref="TinyStack"/> (2
/// blocks, both reversible): MEFT1 and MEFT2 with bottleneck 4, in the MEFT file layout (<see cref="MeftFiles"/>).</summary>
public static class MeftRows
{
    /// <summary>The fields every MEFT file has.</summary>
    public static readonly string[] ConfigKeys =
    {
        "peft_type", "adapter_name", "f_arch", "x1_factor", "x2_factor", "adapter_bottleneck_dim", "num_rev_layers", "hidden_act",
        "adapter_dropout", "layernorm_in_adapter",
    };

    /// <summary>The rows.</summary>
    public static readonly InsertedConformanceCase[] Cases =
    {
        Row("meft1", new MeftConfig(MeftVariant.Meft1, AdapterBottleneckDim: 4)),
        Row("meft2", new MeftConfig(MeftVariant.Meft2, AdapterBottleneckDim: 4)),
    };

    private static InsertedConformanceCase Row(string name, MeftConfig config) => new(
        name,
        m => m.AddMeft(config),
        (m, dir) => m.SaveMeft(dir),
        (m, dir) => m.LoadMeft(dir),
        MeftFiles.WeightsFileName,
        MeftFiles.ConfigFileName)
    {
        IdentityAtInit = false,
        ExpectedKeys = new[] { 0, 1 }
            .SelectMany(b => new[] { $"blocks.{b}.{Meft.ReversibleAdaptersName}.default.", $"blocks.{b}.output_adapters.adapters.default." })
            .SelectMany(p => new[] { "dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias" }.Select(t => p + t))
            .ToList(),
        ConfigKeys = ConfigKeys,
        ExpectedConfig = new Dictionary<string, JsonNode?>
        {
            ["peft_type"] = "MEFT", ["f_arch"] = MeftConfig.FArch(config.Variant), ["adapter_bottleneck_dim"] = 4, ["adapter_name"] = "default",
        },
    };
}
