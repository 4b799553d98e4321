using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>PiSSA (full and randomized SVD) and OLoRA rows: LoRA's keys and LoraConfig fields, with PEFT's exact
/// init_lora_weights value; the base holds the residual, so every check runs on it (peft merge derives it from the base file).</summary>
public static class PiSSARows
{
    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("pissa-r4", new LoRAOptions(Rank: 4, Alpha: 8, Init: LoRAInit.PiSSA), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "lora_A.weight", "lora_B.weight" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LORA", ["r"] = 4, ["lora_alpha"] = 8.0, ["use_dora"] = false, ["init_lora_weights"] = "pissa",
            },
            Attribute = "[LoRA(rank: 4, alpha: 8, Init = LoRAInit.PiSSA)]",
            BadAttributes = new[]
            {
                ("[LoRA(rank: 16, Init = LoRAInit.PiSSA)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[LoRA(rank: 4, Init = LoRAInit.PiSSA, PissaIterations = -1)]", "Linear(8, 12)", new[] { "PEFT0021" }),
                ("[LoRA(rank: 4, PissaIterations = 4)]", "Linear(8, 12)", new[] { "PEFT0021" }),
                ("[DoRA(rank: 4, Init = LoRAInit.PiSSA)]", "Linear(8, 12)", new[] { "PEFT0021" }),
            },
        },
        new("pissa-niter-r2", new LoRAOptions(Rank: 2, Alpha: 2, Init: LoRAInit.PiSSA, PissaIterations: 4), "fc2")
        {
            ExpectedKeys = new[] { "base_model.model.fc2.lora_A.weight", "base_model.model.fc2.lora_B.weight" },
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LORA", ["r"] = 2, ["init_lora_weights"] = "pissa_niter_4" },
            Attribute = "[LoRA(rank: 2, alpha: 2, Init = LoRAInit.PiSSA, PissaIterations = 4)]",
            AttributeLayer = "Linear(12, 8)",
        },
        new("olora-r4", new LoRAOptions(Rank: 4, Alpha: 8, Init: LoRAInit.OLoRA), "fc1", "fc2")
        {
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "lora_A.weight", "lora_B.weight" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LORA", ["r"] = 4, ["init_lora_weights"] = "olora" },
            Attribute = "[LoRA(rank: 4, alpha: 8, Init = LoRAInit.OLoRA)]",
            BadAttributes = new[]
            {
                ("[DoRA(rank: 4, Init = LoRAInit.OLoRA)]", "Linear(8, 12)", new[] { "PEFT0021" }),
            },
        },
    };
}
