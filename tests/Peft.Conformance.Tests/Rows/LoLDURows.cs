using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>LoLDU rows (this library's own "LOLDU" format): both linear layers, and one with α = r (initial scaling 1). The base
/// holds the residual, so every check runs on it; the triangular factors are saved but never train.</summary>
public static class LoLDURows
{
    /// <summary>The LOLDU config's fields: the common ones, r, alpha and their patterns.</summary>
    public static readonly HashSet<string> LoLDUConfigKeys = PeftConfigKeys.With(
        "r", "alpha", "rank_pattern", "alpha_pattern", "target_modules", "exclude_modules", "modules_to_save");

    private static readonly string[] s_names = { "loldu_z", "loldu_scaling_factor", "loldu_L", "loldu_U" };

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("loldu-r4", new LoLDUOptions(Rank: 4), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => s_names.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = LoLDUConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LOLDU", ["r"] = 4, ["alpha"] = 1.0 },
            Attribute = "[LoLDU(rank: 4)]",
            BadAttributes = new[]
            {
                ("[LoLDU(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[LoLDU(rank: 2, alpha: 0)]", "Linear(8, 12)", new[] { "PEFT0002" }),
                ("[LoLDU(rank: 9)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[LoLDU(rank: 2)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("loldu-unit-scaling", new LoLDUOptions(Rank: 2, Alpha: 2), "fc2")
        {
            ExpectedKeys = s_names.Select(n => "base_model.model.fc2." + n).ToArray(),
            ConfigKeys = LoLDUConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LOLDU", ["r"] = 2, ["alpha"] = 2.0 },
            Attribute = "[LoLDU(rank: 2, alpha: 2)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
