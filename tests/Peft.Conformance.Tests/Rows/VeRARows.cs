using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>VeRA rows: both linear layers with the projections in the file, and one layer without them (regenerated on load).</summary>
public static class VeRARows
{
    /// <summary>PEFT's VeraConfig fields (no exclude_modules).</summary>
    public static readonly HashSet<string> VeraConfigKeys = PeftConfigKeys.With(
        "r", "target_modules", "projection_prng_key", "save_projection", "vera_dropout", "d_initial", "fan_in_fan_out",
        "bias", "modules_to_save", "init_weights", "layers_to_transform", "layers_pattern");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // fc1 8 -> 12 and fc2 12 -> 8: shared vera_A [4, 12] and vera_B [12, 4]; r + out = 16 and 12 trainable parameters.
        new("vera-r4", new VeRAOptions(Rank: 4), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "vera_lambda_b", "vera_lambda_d" }.Select(n => $"base_model.model.{m}.{n}"))
                .Concat(new[] { "base_model.vera_A", "base_model.vera_B" }).ToArray(),
            ConfigKeys = VeraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "VERA", ["r"] = 4, ["projection_prng_key"] = 0, ["save_projection"] = true, ["vera_dropout"] = 0.0, ["d_initial"] = 0.1,
                ["bias"] = "none", ["init_weights"] = true,
            },
            Attribute = "[VeRA(rank: 4)]",
            BadAttributes = new[]
            {
                ("[VeRA(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[VeRA(rank: 4, Dropout = 1.0)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[VeRA(rank: 4)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("vera-no-projection", new VeRAOptions(Rank: 2, Dropout: 0.25, DInitial: 0.5, ProjectionPrngKey: 9, SaveProjection: false), "fc2")
        {
            ExpectedKeys = new[] { "vera_lambda_b", "vera_lambda_d" }.Select(n => "base_model.model.fc2." + n).ToArray(),
            ConfigKeys = VeraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "VERA", ["r"] = 2, ["projection_prng_key"] = 9, ["save_projection"] = false, ["vera_dropout"] = 0.25, ["d_initial"] = 0.5,
            },
            Attribute = "[VeRA(rank: 2, Dropout = 0.25, DInitial = 0.5, ProjectionPrngKey = 9, SaveProjection = false)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
