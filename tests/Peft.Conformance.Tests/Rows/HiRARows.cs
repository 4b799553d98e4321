using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>HiRA rows: both linear layers, and one with dropout (training only).</summary>
public static class HiRARows
{
    /// <summary>PEFT's HiraConfig fields.</summary>
    public static readonly HashSet<string> HiraConfigKeys = PeftConfigKeys.With(
        "r", "rank_pattern", "hira_dropout", "fan_in_fan_out", "target_modules", "exclude_modules", "init_weights",
        "layers_to_transform", "layers_pattern", "modules_to_save");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // fc1 8 -> 12 and fc2 12 -> 8; r = 2: 2·20 = 40 parameters per layer, an update W ⊙ B A of rank up to rank(W)·2.
        new("hira-r2", new HiRAOptions(Rank: 2), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "hira_A", "hira_B" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = HiraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "HIRA", ["r"] = 2, ["hira_dropout"] = 0.0, ["init_weights"] = true, ["fan_in_fan_out"] = false,
            },
            Attribute = "[HiRA(rank: 2)]",
            BadAttributes = new[]
            {
                ("[HiRA(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[HiRA(rank: 2, dropout: 1.0)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[HiRA(rank: 9)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[HiRA(rank: 2)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("hira-dropout", new HiRAOptions(Rank: 1, Dropout: 0.25), "fc2")
        {
            ExpectedKeys = new[] { "hira_A", "hira_B" }.Select(n => "base_model.model.fc2." + n).ToArray(),
            ConfigKeys = HiraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "HIRA", ["r"] = 1, ["hira_dropout"] = 0.25 },
            Attribute = "[HiRA(rank: 1, dropout: 0.25)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
