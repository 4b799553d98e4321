using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>VB-LoRA rows: both linear layers sharing one trainable bank, and one layer with dropout and top-3 (not top-1,
/// whose logits get no gradient: the softmax of one logit is 1, in PEFT too). PEFT's init
/// is not the identity (random logits mix a random bank).</summary>
public static class VBLoRARows
{
    /// <summary>PEFT's VBLoRAConfig fields.</summary>
    public static readonly HashSet<string> VBLoRAConfigKeys = PeftConfigKeys.With(
        "r", "num_vectors", "vector_length", "topk", "target_modules", "exclude_modules", "save_only_topk_weights", "vblora_dropout",
        "fan_in_fan_out", "bias", "modules_to_save", "init_vector_bank_bound", "init_logits_std", "layers_to_transform", "layers_pattern");

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        // fc1 8 -> 12 and fc2 12 -> 8 with L = 4: logits [2, 2, 6] and [3, 2, 6] (fc1), [2, 3, 6] and [2, 2, 6] (fc2); one bank [6, 4].
        new("vblora-r2", new VBLoRAOptions(Rank: 2, NumVectors: 6, VectorLength: 4), "fc1", "fc2")
        {
            IdentityAtInit = false,
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "vblora_logits_A", "vblora_logits_B" }.Select(n => $"base_model.model.{m}.{n}"))
                .Append("base_model.vblora_vector_bank").ToArray(),
            ConfigKeys = VBLoRAConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "VBLORA", ["r"] = 2, ["num_vectors"] = 6, ["vector_length"] = 4, ["topk"] = 2, ["save_only_topk_weights"] = false,
                ["vblora_dropout"] = 0.0, ["init_vector_bank_bound"] = 0.02, ["init_logits_std"] = 0.1, ["bias"] = "none",
            },
            Attribute = "[VBLoRA(2, 6, 4)]",
            BadAttributes = new[]
            {
                ("[VBLoRA(0, 6, 4)]", "Linear(8, 12)", new[] { "PEFT0001" }),
                ("[VBLoRA(2, 6, 4, Dropout = 1.0)]", "Linear(8, 12)", new[] { "PEFT0003" }),
                ("[VBLoRA(2, 6, 8)]", "Linear(8, 12)", new[] { "PEFT0022" }),
                ("[VBLoRA(2, 6, 4, TopK = 7)]", "Linear(8, 12)", new[] { "PEFT0023" }),
                ("[VBLoRA(2, 6, 4)]", "Embedding(20, 8)", new[] { "PEFT0006" }),
            },
        },
        new("vblora-top3-dropout", new VBLoRAOptions(Rank: 3, NumVectors: 4, VectorLength: 2, TopK: 3, Dropout: 0.25, InitVectorBankBound: 0.1, InitLogitsStd: 0.5), "fc2")
        {
            IdentityAtInit = false,
            ExpectedKeys = new[] { "vblora_logits_A", "vblora_logits_B" }.Select(n => "base_model.model.fc2." + n).Append("base_model.vblora_vector_bank").ToArray(),
            ConfigKeys = VBLoRAConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "VBLORA", ["r"] = 3, ["num_vectors"] = 4, ["vector_length"] = 2, ["topk"] = 3, ["vblora_dropout"] = 0.25,
                ["init_vector_bank_bound"] = 0.1, ["init_logits_std"] = 0.5,
            },
            Attribute = "[VBLoRA(3, 4, 2, TopK = 3, Dropout = 0.25, InitVectorBankBound = 0.1, InitLogitsStd = 0.5)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
