using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>LoftQ rows (NF4 and int8): LoRA's keys and LoraConfig fields with init_lora_weights "loftq" and PEFT's
/// loftq_config {loftq_bits, loftq_iter}; the base holds the quantized Q, so the model does not start at the original outputs
/// (catalogue 11.1), and every check runs on Q (peft merge derives it from the base file, as a load does).</summary>
public static class LoftQRows
{
    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("loftq-nf4-r4", new LoRAOptions(Rank: 4, Alpha: 8, Init: LoRAInit.LoftQ, LoftQIterations: 2), "fc1", "fc2")
        {
            IdentityAtInit = false,
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "lora_A.weight", "lora_B.weight" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LORA", ["r"] = 4, ["lora_alpha"] = 8.0, ["use_dora"] = false, ["init_lora_weights"] = "loftq",
                ["loftq_config"] = new JsonObject { ["loftq_bits"] = 4, ["loftq_iter"] = 2 },
            },
            Attribute = "[LoRA(rank: 4, alpha: 8, Init = LoRAInit.LoftQ, LoftQIterations = 2)]",
            BadAttributes = new[]
            {
                ("[LoRA(rank: 16, Init = LoRAInit.LoftQ)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[LoRA(rank: 4, Init = LoRAInit.LoftQ, LoftQBits = 2)]", "Linear(8, 12)", new[] { "PEFT0050" }),
                ("[LoRA(rank: 4, Init = LoRAInit.LoftQ, LoftQIterations = 0)]", "Linear(8, 12)", new[] { "PEFT0050" }),
                ("[LoRA(rank: 4, LoftQBits = 8)]", "Linear(8, 12)", new[] { "PEFT0050" }),
                ("[DoRA(rank: 4, Init = LoRAInit.LoftQ)]", "Linear(8, 12)", new[] { "PEFT0021" }),
            },
        },
        new("loftq-int8-r2", new LoRAOptions(Rank: 2, Alpha: 2, Init: LoRAInit.LoftQ, LoftQBits: 8), "fc2")
        {
            IdentityAtInit = false,
            ExpectedKeys = new[] { "base_model.model.fc2.lora_A.weight", "base_model.model.fc2.lora_B.weight" },
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LORA", ["r"] = 2, ["init_lora_weights"] = "loftq",
                ["loftq_config"] = new JsonObject { ["loftq_bits"] = 8, ["loftq_iter"] = 1 },
            },
            Attribute = "[LoRA(rank: 2, alpha: 2, Init = LoRAInit.LoftQ, LoftQBits = 8)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
