using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>KaSA rows: PEFT's LoraConfig with kasa_config {beta, gamma} and the extra <c>lora_diag</c> tensor (no .weight
/// suffix); the base holds the truncated weight, so every check runs on it (peft merge derives it from the base file).</summary>
public static class KaSARows
{
    /// <summary>LoraConfig's keys with PEFT's kasa_config (huggingface/peft#3446).</summary>
    public static readonly HashSet<string> KasaConfigKeys = new(LoRARows.LoraConfigKeys.Append("kasa_config"));

    private static string[] Keys(params string[] modules)
        => modules.SelectMany(m => new[] { "lora_A.weight", "lora_B.weight", "lora_diag" }.Select(n => $"base_model.model.{m}.{n}")).ToArray();

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("kasa-r4", new KaSAOptions(Rank: 4, Alpha: 8), "fc1", "fc2")
        {
            IdentityAtInit = false,   // the layer starts at the truncated base, as PEFT's (documented "not identity-preserving")
            ExpectedKeys = Keys("fc1", "fc2"),
            ConfigKeys = KasaConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LORA", ["r"] = 4, ["lora_alpha"] = 8.0, ["use_dora"] = false, ["init_lora_weights"] = true,
                ["kasa_config"] = new JsonObject { ["beta"] = 1e-4, ["gamma"] = 1e-3 },
            },
            Attribute = "[KaSA(rank: 4, alpha: 8)]",
            BadAttributes = new[]
            {
                ("[KaSA(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[KaSA(rank: 4, alpha: 0)]", "Linear(8, 12)", new[] { "PEFT0002" }),
                ("[KaSA(rank: 4, dropout: 1.5)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[KaSA(rank: 9)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[KaSA(rank: 8)]", "Linear(8, 12)", new[] { "PEFT0045" }),
                ("[KaSA(rank: 4, Beta = -1)]", "Linear(8, 12)", new[] { "PEFT0046" }),
                ("[KaSA(rank: 4, Gamma = double.NaN)]", "Linear(8, 12)", new[] { "PEFT0046" }),
                ("[KaSA(rank: 4)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("kasa-rslora-weights", new KaSAOptions(Rank: 2, Alpha: 4, Dropout: 0.1, UseRsLora: true, Beta: 0.5, Gamma: 0.25), "fc2")
        {
            IdentityAtInit = false,
            ExpectedKeys = Keys("fc2"),
            ConfigKeys = KasaConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["use_rslora"] = true, ["lora_dropout"] = 0.1, ["kasa_config"] = new JsonObject { ["beta"] = 0.5, ["gamma"] = 0.25 },
            },
            Attribute = "[KaSA(rank: 2, alpha: 4, dropout: 0.1, UseRsLora = true, Beta = 0.5, Gamma = 0.25)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
