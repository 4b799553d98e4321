using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>DoRA rows: PEFT's LoraConfig with use_dora, the magnitude saved without a .weight suffix.</summary>
public static class DoRARows
{
    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("dora-r4", new DoRAOptions(Rank: 4, Alpha: 8), "fc1", "fc2")
        {
            ExpectedKeys = new[]
            {
                "base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight", "base_model.model.fc1.lora_magnitude_vector",
                "base_model.model.fc2.lora_A.weight", "base_model.model.fc2.lora_B.weight", "base_model.model.fc2.lora_magnitude_vector",
            },
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LORA", ["use_dora"] = true, ["r"] = 4, ["lora_alpha"] = 8.0 },
            Attribute = "[DoRA(rank: 4, alpha: 8)]",
            BadAttributes = new[]
            {
                ("[DoRA(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[DoRA(rank: 4, alpha: 0)]", "Linear(8, 12)", new[] { "PEFT0002" }),
                ("[DoRA(rank: 4, dropout: 1.5)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[DoRA(rank: 9)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[DoRA(rank: 4)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("dora-rslora-dropout", new DoRAOptions(Rank: 2, Alpha: 4, Dropout: 0.1, UseRsLora: true), "fc2")
        {
            ExpectedKeys = new[] { "base_model.model.fc2.lora_A.weight", "base_model.model.fc2.lora_B.weight", "base_model.model.fc2.lora_magnitude_vector" },
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["use_dora"] = true, ["use_rslora"] = true, ["lora_dropout"] = 0.1 },
            Attribute = "[DoRA(rank: 2, alpha: 4, dropout: 0.1, UseRsLora = true)]",
        },
    };
}
