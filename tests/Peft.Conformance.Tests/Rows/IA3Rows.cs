using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>(IA)³ rows: output scaling on fc1, input scaling (feed-forward) on fc2.</summary>
public static class IA3Rows
{
    /// <summary>PEFT 0.20.0's IA3Config fields.</summary>
    public static readonly HashSet<string> IA3ConfigKeys = PeftConfigKeys.With(
        "target_modules", "exclude_modules", "feedforward_modules", "fan_in_fan_out", "modules_to_save", "init_ia3_weights");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("ia3", new IA3Options(FeedForwardModules: TargetModules.Names("fc2")), "fc1", "fc2")
        {
            // PEFT's unmerge divides by l + 1e-8.
            UnmergeTolerance = 1e-5,
            ExpectedKeys = new[] { "base_model.model.fc1.ia3_l", "base_model.model.fc2.ia3_l" },
            ConfigKeys = IA3ConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "IA3", ["feedforward_modules"] = new JsonArray("fc2"), ["init_ia3_weights"] = true, ["fan_in_fan_out"] = false,
            },
            Attribute = "[IA3]",
            BadAttributes = new[]
            {
                ("[IA3]", "Embedding(20, 8)", new[] { "PEFT0006" }),
                ("[IA3(InitWeights = false)]", "Linear(8, 12)", new[] { "PEFT0019" }),
            },
        },
        new("ia3-feedforward", new IA3Options(FeedForward: true), "fc2")
        {
            UnmergeTolerance = 1e-5,
            ExpectedKeys = new[] { "base_model.model.fc2.ia3_l" },
            ConfigKeys = IA3ConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "IA3", ["feedforward_modules"] = new JsonArray("fc2") },
            Attribute = "[IA3(FeedForward = true)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
