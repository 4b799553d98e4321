using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft.Conformance.Tests;

/// <summary>LoFiT's rows (inserted adapters inside attention, <see cref="InsertedConformanceCase"/>), on
/// <see cref="TinyStack"/>'s two-head attention: stage 1 (scales on every head,
/// zero init: the base bit for bit), stage 2 (offsets on two selected heads with the authors' N(0, 1e-3) init: within 1e-2
/// of the base), and both vectors; each merges into the output projection <c>o</c> through <c>MergeLoFiT</c> (the generic <c>Merge</c>
/// refuses, as for every inserted adapter) and files are this library's LOFIT directories.</summary>
public static class LoFiTRows
{
    /// <summary>The fields every LOFIT config has.</summary>
    public static readonly string[] ConfigKeys = ["peft_type", "adapter_name", "components", "l1_lambda", "init_std", "layers"];

    private static readonly LoFiTHeadSelection s_selection = new([new(1, 0), new(0, 1)]);

    /// <summary>The rows.</summary>
    public static readonly InsertedConformanceCase[] Cases =
    {
        Row("lofit-scale", new LoFiTConfig(LoFiTComponents.Scale, L1Lambda: 5e-3, InitStd: 0), null, ["lofit_A"]),
        Row("lofit-bias", new LoFiTConfig(LoFiTComponents.Bias), s_selection, ["lofit_v"]) with { IdentityAtInit = false, InitTolerance = 1e-2 },
        Row("lofit-scale-bias", new LoFiTConfig(LoFiTComponents.ScaleAndBias), s_selection, ["lofit_A", "lofit_v"]) with { IdentityAtInit = false, InitTolerance = 1e-2 },
    };

    private static InsertedConformanceCase Row(string name, LoFiTConfig config, LoFiTHeadSelection? selection, string[] tensors) => new(
        name,
        m => m.AddLoFiT(config, selection, AdapterNames.Default),
        (m, dir) => m.SaveLoFiT(dir, AdapterNames.Default),
        (m, dir) => m.LoadLoFiT(dir),
        AdapterFiles.WeightsFileName,
        AdapterFiles.ConfigFileName)
    {
        OwnMerge = m => m.MergeLoFiT(AdapterNames.Default),
        OwnUnmerge = m => m.UnmergeLoFiT(AdapterNames.Default),
        ExpectedKeys = new[] { 0, 1 }.SelectMany(b => tensors.Select(t => $"blocks.{b}.attn.{t}")).ToList(),
        ConfigKeys = ConfigKeys,
        ExpectedConfig = new Dictionary<string, JsonNode?>
        {
            ["peft_type"] = "LOFIT",
            ["adapter_name"] = "default",
            ["components"] = LoFiTConfig.FileName(config.Components),
            ["l1_lambda"] = config.L1Lambda,
            ["init_std"] = config.InitStd,
        },
    };
}
