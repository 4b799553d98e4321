using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>LayerNorm-tuning rows: the tiny model's LayerNorm (weight and bias).</summary>
public static class LNTuningRows
{
    /// <summary>PEFT 0.20.0's LNTuningConfig fields.</summary>
    public static readonly HashSet<string> LNTuningConfigKeys = PeftConfigKeys.With("target_modules", "exclude_modules", "modules_to_save");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("lntuning", new LNTuningOptions(), "norm")
        {
            // Merge writes the trained copy into the norm and unmerge writes the kept original back: both exact.
            MergeTolerance = 0,
            UnmergeTolerance = 0,
            ExpectedKeys = new[] { "base_model.model.norm.ln_tuning_layers.weight", "base_model.model.norm.ln_tuning_layers.bias" },
            ConfigKeys = LNTuningConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LN_TUNING", ["target_modules"] = new JsonArray("norm"), ["exclude_modules"] = null, ["modules_to_save"] = null,
            },
            Attribute = "[LNTuning]",
            AttributeLayer = "LayerNorm(8)",
            BadAttributes = new[]
            {
                ("[LNTuning]", "Linear(8, 12)", new[] { "PEFT0006" }),
                ("[LNTuning]", "Embedding(20, 8)", new[] { "PEFT0006" }),
                ("[LNTuning]", "LayerNorm(8, elementwise_affine: false)", new[] { "PEFT0020" }),
            },
        },
    };
}
