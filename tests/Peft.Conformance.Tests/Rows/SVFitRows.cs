using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>SVFit rows (this library's own "SVFIT" format): an explicit rank on both linear layers, and the rank chosen by energy
/// (recorded per layer in r/rank_pattern). The base holds the residual, so every check runs on it (peft merge derives it from
/// the base file); the singular vectors are saved but never train.</summary>
public static class SVFitRows
{
    /// <summary>The SVFIT config's fields: the common ones, r and rank_pattern.</summary>
    public static readonly HashSet<string> SVFitConfigKeys = PeftConfigKeys.With(
        "r", "rank_pattern", "target_modules", "exclude_modules", "modules_to_save");

    private static readonly string[] s_names = { "svfit_sigma", "svfit_U", "svfit_Vh" };

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("svfit-r3", new SVFitOptions(Rank: 3), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => s_names.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = SVFitConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "SVFIT", ["r"] = 3, ["rank_pattern"] = new JsonObject() },
            Attribute = "[SVFit(rank: 3)]",
            BadAttributes = new[]
            {
                ("[SVFit(rank: -1)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[SVFit(rank: 9)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[SVFit(EnergyThreshold = 99)]", "Linear(8, 12)", new[] { "PEFT0026" }),
                ("[SVFit(EnergyThreshold = 0)]", "Linear(8, 12)", new[] { "PEFT0026" }),
                ("[SVFit(rank: 2, EnergyThreshold = 0.9)]", "Linear(8, 12)", new[] { "PEFT0026" }),
                ("[SVFit(rank: 2)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("svfit-energy", new SVFitOptions(EnergyThreshold: 0.9), "fc2")
        {
            ExpectedKeys = s_names.Select(n => "base_model.model.fc2." + n).ToArray(),
            ConfigKeys = SVFitConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "SVFIT" },
            Attribute = "[SVFit(EnergyThreshold = 0.9)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
