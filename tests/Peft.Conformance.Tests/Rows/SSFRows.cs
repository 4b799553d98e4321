using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>SSF rows: after both linear layers and the LayerNorm (the paper's insertion points), and the norm alone.</summary>
public static class SSFRows
{
    /// <summary>This library's SSF config: LNTuningConfig's field set (SSF is not in PEFT).</summary>
    public static readonly HashSet<string> SSFConfigKeys = PeftConfigKeys.With("target_modules", "exclude_modules", "modules_to_save");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("ssf", new SSFOptions(), "norm", "fc1", "fc2")
        {
            // γ ~ N(1, 0.02²), β ~ N(0, 0.02²): documented as not the identity at init.
            IdentityAtInit = false,
            ExpectedKeys = new[] { "norm", "fc1", "fc2" }.SelectMany(m => new[] { "ssf_scale", "ssf_shift" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = SSFConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "SSF", ["exclude_modules"] = null, ["modules_to_save"] = null },
            Attribute = "[SSF]",
            BadAttributes = new[]
            {
                ("[SSF]", "Embedding(20, 8)", new[] { "PEFT0006" }),
                ("[SSF]", "Linear(8, 12, hasBias: false)", new[] { "PEFT0025" }),
            },
        },
        new("ssf-norm", new SSFOptions(), "norm")
        {
            IdentityAtInit = false,
            ExpectedKeys = new[] { "base_model.model.norm.ssf_scale", "base_model.model.norm.ssf_shift" },
            ConfigKeys = SSFConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "SSF", ["target_modules"] = new JsonArray("norm") },
            Attribute = "[SSF]",
            AttributeLayer = "LayerNorm(8)",
        },
    };
}
