using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>LoRA and rsLoRA rows.</summary>
public static class LoRARows
{
    /// <summary>PEFT 0.20.0's LoraConfig fields (DoRA and every LoRA-format method write the same keys).</summary>
    public static readonly HashSet<string> LoraConfigKeys = PeftConfigKeys.With(
        "r", "target_modules", "exclude_modules", "lora_alpha", "lora_dropout", "fan_in_fan_out", "bias", "use_rslora",
        "modules_to_save", "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
        "megatron_config", "megatron_core", "trainable_token_indices", "loftq_config", "eva_config", "corda_config",
        "lora_ga_config", "use_dora", "velora_config", "alora_invocation_tokens", "use_qalora", "qalora_group_size",
        "monteclora_config", "layer_replication", "lora_bias", "target_parameters", "use_bdlora", "arrow_config",
        "ensure_weight_tying");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("lora-r4", new LoRAOptions(Rank: 4, Alpha: 8), "fc1", "fc2")
        {
            ExpectedKeys = new[]
            {
                "base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight",
                "base_model.model.fc2.lora_A.weight", "base_model.model.fc2.lora_B.weight",
            },
            ConfigKeys = LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LORA", ["r"] = 4, ["lora_alpha"] = 8.0, ["use_dora"] = false, ["use_rslora"] = false,
            },
            Attribute = "[LoRA(rank: 4, alpha: 8)]",
            BadAttributes = new[]
            {
                ("[LoRA(rank: 0)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[LoRA(rank: 4, alpha: -1)]", "Linear(8, 12)", new[] { "PEFT0002" }),
                ("[LoRA(rank: 4, dropout: 1.0)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[LoRA(rank: 16)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[LoRA(rank: 4)]", "LayerNorm(8)", new[] { "PEFT0006" }),
            },
        },
        new("rslora-r4", new LoRAOptions(Rank: 4, Alpha: 8, UseRsLora: true), "fc1")
        {
            ExpectedKeys = new[] { "base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight" },
            ConfigKeys = LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "LORA", ["use_rslora"] = true },
            Attribute = "[LoRA(rank: 4, alpha: 8, UseRsLora = true)]",
        },
    };
}
