using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>LoHa rows: both linear layers, and one with rank dropout (training only).</summary>
public static class LoHaRows
{
    /// <summary>PEFT 0.20.0's LoHaConfig fields.</summary>
    public static readonly HashSet<string> LoHaConfigKeys = PeftConfigKeys.With(
        "rank_pattern", "alpha_pattern", "r", "alpha", "rank_dropout", "module_dropout", "use_effective_conv2d",
        "target_modules", "exclude_modules", "init_weights", "layers_to_transform", "layers_pattern", "modules_to_save");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // fc1 8 -> 12 and fc2 12 -> 8; r = 2 gives rank-4 updates (r²) from 2·2·20 = 80 parameters per layer.
        new("loha-r2", new LoHaOptions(Rank: 2, Alpha: 4), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = LoHaConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LOHA", ["r"] = 2, ["alpha"] = 4.0, ["rank_dropout"] = 0.0, ["module_dropout"] = 0.0, ["init_weights"] = true,
            },
            Attribute = "[LoHa(rank: 2, alpha: 4)]",
            BadAttributes = new[]
            {
                ("[LoHa(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[LoHa(rank: 2, alpha: 0)]", "Linear(8, 12)", new[] { "PEFT0002" }),
                ("[LoHa(rank: 2, RankDropout = 1.0)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[LoHa(rank: 2, ModuleDropout = -0.5)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[LoHa(rank: 2)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("loha-rank-dropout", new LoHaOptions(Rank: 1, Alpha: 2, RankDropout: 0.25), "fc2")
        {
            ExpectedKeys = new[] { "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b" }.Select(n => "base_model.model.fc2." + n).ToArray(),
            ConfigKeys = LoHaConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LOHA", ["r"] = 1, ["alpha"] = 2.0, ["rank_dropout"] = 0.25 },
            Attribute = "[LoHa(rank: 1, alpha: 2, RankDropout = 0.25, ModuleDropout = 0.1)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
