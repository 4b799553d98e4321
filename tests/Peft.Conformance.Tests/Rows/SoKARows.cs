using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>SoKA rows (this library's own "SOKA" format): an explicit rank on both linear layers, and the automatic rank
/// (recorded per layer in r/rank_pattern). The base holds the residual, so every check runs on it (peft merge derives it from
/// the base file).</summary>
public static class SoKARows
{
    /// <summary>The SOKA config's fields: the common ones, r, rank_pattern and decompose_factor.</summary>
    public static readonly HashSet<string> SoKAConfigKeys = PeftConfigKeys.With(
        "r", "rank_pattern", "decompose_factor", "target_modules", "exclude_modules", "modules_to_save");

    private static readonly string[] s_names = { "soka_w1", "soka_w2" };

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("soka-r2", new SoKAOptions(Rank: 2), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => s_names.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = SoKAConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "SOKA", ["r"] = 2, ["rank_pattern"] = new JsonObject(), ["decompose_factor"] = -1 },
            Attribute = "[SoKA(rank: 2)]",
            BadAttributes = new[]
            {
                ("[SoKA(rank: -1)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[SoKA(rank: 7)]", "Linear(8, 12)", new[] { "PEFT0048" }),
                ("[SoKA(rank: 2, Factor = 3)]", "Linear(8, 12)", new[] { "PEFT0005" }),
                ("[SoKA(EnergyThreshold = 90)]", "Linear(8, 12)", new[] { "PEFT0047" }),
                ("[SoKA(rank: 2, EnergyThreshold = 0.5)]", "Linear(8, 12)", new[] { "PEFT0047" }),
                ("[SoKA(rank: 2)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("soka-auto-factor2", new SoKAOptions(Factor: 2, EnergyThreshold: 0.8), "fc2")
        {
            ExpectedKeys = s_names.Select(n => "base_model.model.fc2." + n).ToArray(),
            ConfigKeys = SoKAConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "SOKA", ["decompose_factor"] = 2 },
            Attribute = "[SoKA(Factor = 2, EnergyThreshold = 0.8)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
