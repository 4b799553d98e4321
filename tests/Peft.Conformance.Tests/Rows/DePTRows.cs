using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>DePT rows (the DePT fork's PROMPT_TUNING_LORA format; upstream PEFT has no DePT).</summary>
public static class DePTRows
{
    /// <summary>The fork's PromptTuningLoRAConfig fields, plus the common ones this library's saver writes
    /// (peft_version, auto_mapping, modules_to_save), which the fork's loader ignores.</summary>
    public static readonly HashSet<string> DePTConfigKeys = PeftConfigKeys.With(
        "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
        "modules_to_save", "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path",
        "r", "lora_alpha", "bias", "init_lora_weights", "hidden_size", "max_length",
        "save_lora_embeddings", "load_lora_embeddings", "load_lora_embedding_B");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // The conformance inputs have 5 tokens: the table covers exactly 5 positions. A prompt prepends positions (not the
        // identity) and neither it nor the position table can be merged.
        new("dept-3", new DePTOptions(VirtualTokens: 3, MaxLength: 5, Rank: 2, Alpha: 4), "embed")
        {
            IdentityAtInit = false,
            Mergeable = false,
            ExpectedKeys = new[] { "prompt_embeddings", "prompt_encoder.lora_embedding_A", "prompt_encoder.lora_embedding_B" },
            ConfigKeys = DePTConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "PROMPT_TUNING_LORA", ["num_virtual_tokens"] = 3, ["token_dim"] = 8, ["max_length"] = 5, ["r"] = 2,
                ["lora_alpha"] = 4.0, ["hidden_size"] = 8, ["save_lora_embeddings"] = true,
            },
            Attribute = "[DePT(virtualTokens: 3, maxLength: 5, rank: 2, alpha: 4)]",
            AttributeLayer = "Embedding(20, 8)",
            BadAttributes = new[]
            {
                ("[DePT(maxLength: 0)]", "Embedding(20, 8)", new[] { "PEFT0030" }),
                ("[DePT(virtualTokens: -2)]", "Embedding(20, 8)", new[] { "PEFT0030" }),
                ("[DePT(rank: 0)]", "Embedding(20, 8)", new[] { "PEFT0001" }),
                ("[DePT(alpha: -1)]", "Embedding(20, 8)", new[] { "PEFT0002" }),
                ("[DePT]", "Linear(8, 12)", new[] { "PEFT0006" }),
            },
        },
    };
}
