using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>LoKr rows.</summary>
public static class KroneckerRows
{
    /// <summary>PEFT 0.20.0's LoKrConfig fields.</summary>
    public static readonly HashSet<string> LoKrConfigKeys = PeftConfigKeys.With(
        "rank_pattern", "alpha_pattern", "r", "alpha", "rank_dropout", "module_dropout", "use_effective_conv2d",
        "decompose_both", "decompose_factor", "rank_dropout_scale", "target_modules", "exclude_modules", "init_weights",
        "layers_to_transform", "layers_pattern", "modules_to_save");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // fc1 8 -> 12: in (2, 4), out (3, 4); r = 1 < max(4, 4) / 2, so W2 is factored; W1 full.
        new("lokr-r1", new KroneckerOptions(Rank: 1, Alpha: 2), "fc1")
        {
            ExpectedKeys = new[] { "base_model.model.fc1.lokr_w1", "base_model.model.fc1.lokr_w2_a", "base_model.model.fc1.lokr_w2_b" },
            ConfigKeys = LoKrConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LOKR", ["r"] = 1, ["alpha"] = 2.0, ["decompose_factor"] = -1 },
            Attribute = "[Kronecker(rank: 1, alpha: 2)]",
            BadAttributes = new[]
            {
                ("[Kronecker(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[Kronecker(rank: 2, Factor = 5)]", "Linear(8, 12)", new[] { "PEFT0005" }),
                ("[Kronecker(rank: 2)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },

        // DiffuseKronA (both factors full): r = 1 would factor W2, so each layer gets PEFT's full-factor settings,
        // r = ceil(max(3, 4, 2, 4) / 2) = 2 and alpha = 2 * 2 / 1 = 4 (the scale stays 2).
        new("diffusekrona", new KroneckerOptions(Rank: 1, Alpha: 2, FullFactors: true), "fc1")
        {
            ExpectedKeys = new[] { "base_model.model.fc1.lokr_w1", "base_model.model.fc1.lokr_w2" },
            ConfigKeys = LoKrConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LOKR", ["r"] = 2, ["alpha"] = 4.0, ["decompose_factor"] = -1 },
            Attribute = "[Kronecker(rank: 1, alpha: 2, FullFactors = true)]",
            BadAttributes = new[]
            {
                ("[Kronecker(rank: 0, FullFactors = true)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[Kronecker(FullFactors = true, Factor = 5)]", "Linear(8, 12)", new[] { "PEFT0005" }),
            },
        },
    };
}
