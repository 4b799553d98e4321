using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>BitFit rows: both linear layers and the LayerNorm (every bias of the tiny model), and one norm alone.</summary>
public static class BitFitRows
{
    /// <summary>This library's BITFIT config: LNTuningConfig's field set (PEFT has no BitFit type).</summary>
    public static readonly HashSet<string> BitFitConfigKeys = PeftConfigKeys.With("target_modules", "exclude_modules", "modules_to_save");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("bitfit", new BitFitOptions(), "norm", "fc1", "fc2")
        {
            // Merge writes the trained bias into the layer and unmerge writes the kept original back: both exact.
            MergeTolerance = 0,
            UnmergeTolerance = 0,
            ExpectedKeys = new[] { "norm", "fc1", "fc2" }.Select(m => $"base_model.model.{m}.bitfit_bias").ToArray(),
            ConfigKeys = BitFitConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "BITFIT", ["exclude_modules"] = null, ["modules_to_save"] = null,
            },
            Attribute = "[BitFit]",
            BadAttributes = new[]
            {
                ("[BitFit]", "Embedding(20, 8)", new[] { "PEFT0006" }),
                ("[BitFit]", "Linear(8, 12, hasBias: false)", new[] { "PEFT0024" }),
                ("[BitFit]", "LayerNorm(8, elementwise_affine: false)", new[] { "PEFT0024" }),
            },
        },
        new("bitfit-norm", new BitFitOptions(), "norm")
        {
            MergeTolerance = 0,
            UnmergeTolerance = 0,
            ExpectedKeys = new[] { "base_model.model.norm.bitfit_bias" },
            ConfigKeys = BitFitConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "BITFIT", ["target_modules"] = new JsonArray("norm") },
            Attribute = "[BitFit]",
            AttributeLayer = "LayerNorm(8)",
        },
    };
}
