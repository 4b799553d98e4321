using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>RandLoRA rows: both linear layers with the bases in the file, and one layer with sparse bases not in the file
/// (regenerated on load).</summary>
public static class RandLoRARows
{
    /// <summary>PEFT's RandLoraConfig fields (no exclude_modules).</summary>
    public static readonly HashSet<string> RandLoraConfigKeys = PeftConfigKeys.With(
        "r", "target_modules", "projection_prng_key", "save_projection", "sparse", "very_sparse", "randlora_dropout", "fan_in_fan_out",
        "randlora_alpha", "bias", "modules_to_save", "init_weights", "layers_to_transform", "layers_pattern");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // fc1 8 -> 12 and fc2 12 -> 8: min 8, n = 2; shared randlora_A [4, 1, 8] and randlora_B [12, 2, 4];
        // r·n + n·min = 8 + 16 = 24 trainable parameters per layer. alpha 8 (s = 2, not PEFT's 20): randomized λ and γ then give
        // outputs near 1, so the absolute merge tolerance means what it does for the other rows.
        new("randlora-r4", new RandLoRAOptions(Rank: 4, Alpha: 8), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "randlora_lambda", "randlora_gamma" }.Select(n => $"base_model.model.{m}.{n}"))
                .Concat(new[] { "base_model.randlora_A", "base_model.randlora_B" }).ToArray(),
            ConfigKeys = RandLoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "RANDLORA", ["r"] = 4, ["randlora_alpha"] = 8.0, ["projection_prng_key"] = 0, ["save_projection"] = true,
                ["sparse"] = false, ["very_sparse"] = false, ["randlora_dropout"] = 0.0, ["bias"] = "none", ["init_weights"] = true,
            },
            Attribute = "[RandLoRA(rank: 4, alpha: 8)]",
            BadAttributes = new[]
            {
                ("[RandLoRA(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[RandLoRA(rank: 4, alpha: 0)]", "Linear(8, 12)", new[] { "PEFT0002" }),
                ("[RandLoRA(rank: 4, Dropout = 1.0)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[RandLoRA(rank: 4)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("randlora-sparse-no-projection", new RandLoRAOptions(Rank: 3, Alpha: 6, Dropout: 0.25, ProjectionPrngKey: 9, SaveProjection: false, Sparse: true), "fc2")
        {
            ExpectedKeys = new[] { "randlora_lambda", "randlora_gamma" }.Select(n => "base_model.model.fc2." + n).ToArray(),
            ConfigKeys = RandLoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "RANDLORA", ["r"] = 3, ["randlora_alpha"] = 6.0, ["projection_prng_key"] = 9, ["save_projection"] = false,
                ["sparse"] = true, ["very_sparse"] = false, ["randlora_dropout"] = 0.25,
            },
            Attribute = "[RandLoRA(rank: 3, alpha: 6, Dropout = 0.25, ProjectionPrngKey = 9, SaveProjection = false, Sparse = true)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
