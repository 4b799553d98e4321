using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>P-tuning rows (PEFT's P_TUNING: the file holds the prompt encoder's output as <c>prompt_embeddings</c>).</summary>
public static class PTuningRows
{
    /// <summary>PromptEncoderConfig's fields: PeftConfig's, PromptLearningConfig's and the encoder's four.</summary>
    public static readonly HashSet<string> PromptEncoderConfigKeys = PeftConfigKeys.With(
        "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers", "modules_to_save",
        "encoder_reparameterization_type", "encoder_hidden_size", "encoder_num_layers", "encoder_dropout");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // A prompt prepends positions (not the identity) and cannot be merged; the file holds the encoder's output, which loads
        // as an inference-mode table (the round trip compares outputs and files, not parameters).
        new("ptuning-mlp-3", new PTuningOptions(VirtualTokens: 3, EncoderHiddenSize: 5), "embed")
        {
            IdentityAtInit = false,
            Mergeable = false,
            FileHoldsComputedTensors = true,
            ExpectedKeys = new[] { "prompt_embeddings" },
            ConfigKeys = PromptEncoderConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "P_TUNING", ["num_virtual_tokens"] = 3, ["token_dim"] = 8, ["encoder_reparameterization_type"] = "MLP",
                ["encoder_hidden_size"] = 5, ["encoder_num_layers"] = 2, ["encoder_dropout"] = 0.0, ["inference_mode"] = true,
            },
            Attribute = "[PTuning(3, 5)]",
            AttributeLayer = "Embedding(20, 8)",
            BadAttributes = new[]
            {
                ("[PTuning(0)]", "Embedding(20, 8)", new[] { "PEFT0014" }),
                ("[PTuning(3, -4)]", "Embedding(20, 8)", new[] { "PEFT0031" }),
                ("[PTuning(3, EncoderType = PromptEncoderType.LSTM, EncoderNumLayers = 0)]", "Embedding(20, 8)", new[] { "PEFT0031" }),
                ("[PTuning(3, EncoderNumLayers = 3)]", "Embedding(20, 8)", new[] { "PEFT0032" }),
                ("[PTuning(3, EncoderDropout = 0.1)]", "Embedding(20, 8)", new[] { "PEFT0032" }),
                ("[PTuning(3, EncoderType = PromptEncoderType.LSTM, EncoderDropout = 1.5)]", "Embedding(20, 8)", new[] { "PEFT0003" }),
                ("[PTuning(3)]", "Linear(8, 12)", new[] { "PEFT0006" }),
            },
        },
        new("ptuning-lstm-2", new PTuningOptions(VirtualTokens: 2, EncoderHiddenSize: 4, EncoderType: PromptEncoderType.LSTM, EncoderDropout: 0.1), "embed")
        {
            IdentityAtInit = false,
            Mergeable = false,
            FileHoldsComputedTensors = true,
            ExpectedKeys = new[] { "prompt_embeddings" },
            ConfigKeys = PromptEncoderConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "P_TUNING", ["num_virtual_tokens"] = 2, ["encoder_reparameterization_type"] = "LSTM",
                ["encoder_hidden_size"] = 4, ["encoder_num_layers"] = 2, ["encoder_dropout"] = 0.1,
            },
            Attribute = "[PTuning(2, 4, EncoderType = PromptEncoderType.LSTM, EncoderDropout = 0.1)]",
            AttributeLayer = "Embedding(20, 8)",
        },
    };
}
