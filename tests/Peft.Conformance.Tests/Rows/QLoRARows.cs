using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>QLoRA's rows: LoRA on a base whose adapted weights are stored as NF4 or int8 (<c>model.QuantizeBase</c> after
/// the targets are applied); PEFT keeps quantization in the base model's config, so the file is LoRA's (keys and LoraConfig
/// fields). The quantized base is not the original's outputs, so the model does not start at them; files load into a model
/// quantized the same way; merging takes QLoRA's documented path, <c>DequantizeBase()</c> then <c>Merge()</c>, so
/// <c>peft merge</c> reads the dequantized base.</summary>
public static class QLoRARows
{
    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        Row("qlora-nf4-r4", QuantizationFormat.NF4),
        Row("qlora-int8-r4", QuantizationFormat.Int8),
    };

    private static ConformanceCase Row(string name, QuantizationFormat format) => new(name, new LoRAOptions(Rank: 4, Alpha: 8), "fc1", "fc2")
    {
        IdentityAtInit = false,
        Calibrate = model => model.QuantizeBase(format),
        CalibrationRewritesBase = true,
        BeforeMerge = model => model.DequantizeBase(),
        ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "lora_A.weight", "lora_B.weight" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
        ConfigKeys = LoRARows.LoraConfigKeys,
        ExpectedConfig = new Dictionary<string, JsonNode?>
        {
            ["peft_type"] = "LORA", ["r"] = 4, ["lora_alpha"] = 8.0, ["use_dora"] = false, ["init_lora_weights"] = true,
        },
        Attribute = "[LoRA(rank: 4, alpha: 8)]",
    };
}
