using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>Prompt-tuning rows.</summary>
public static class PromptTuneRows
{
    /// <summary>PEFT 0.20.0's PromptTuningConfig fields.</summary>
    public static readonly HashSet<string> PromptTuningConfigKeys = PeftConfigKeys.With(
        "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
        "modules_to_save", "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // A prompt prepends positions: not the identity, nothing to merge.
        new("prompt-3", new PromptTuningOptions(VirtualTokens: 3), "embed")
        {
            IdentityAtInit = false,
            Mergeable = false,
            ExpectedKeys = new[] { "prompt_embeddings" },
            ConfigKeys = PromptTuningConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "PROMPT_TUNING", ["num_virtual_tokens"] = 3, ["token_dim"] = 8 },
            Attribute = "[PromptTune(virtualTokens: 3)]",
            AttributeLayer = "Embedding(20, 8)",
            BadAttributes = new[]
            {
                ("[PromptTune(virtualTokens: 0)]", "Embedding(20, 8)", new[] { "PEFT0014" }),
                ("[PromptTune(virtualTokens: 3)]", "Linear(8, 12)", new[] { "PEFT0006" }),
            },
        },
    };
}
