using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>CorDA rows (IPM and KPM): LoRA's keys and LoraConfig fields with init_lora_weights "corda" and PEFT's corda_config;
/// each row calibrates on the matrix's own token batch (PreprocessCorDA) after the adapter is applied, so the layer starts at the
/// original outputs (W_res + s·BA = W); files load into a model calibrated the same way and peft merge takes the residual base.</summary>
public static class CorDARows
{
    private static void Calibrate(TinyModel model) => model.PreprocessCorDA(_ =>
    {
        using var ids = ConformanceTests.Ids();
        using var y = model.call(ids);
    });

    private static JsonObject CordaConfig(string method) => new()
    {
        ["cache_file"] = null, ["corda_method"] = method, ["covariance_file"] = null,
        ["prune_temporary_fields"] = true, ["use_float16_for_covariance"] = false, ["verbose"] = false,
    };

    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("corda-ipm-r4", new LoRAOptions(Rank: 4, Alpha: 8, Init: LoRAInit.CorDA), "fc1", "fc2")
        {
            Calibrate = Calibrate,
            CalibrationRewritesBase = true,
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "lora_A.weight", "lora_B.weight" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LORA", ["r"] = 4, ["lora_alpha"] = 8.0, ["use_dora"] = false, ["init_lora_weights"] = "corda",
                ["corda_config"] = CordaConfig("ipm"), ["loftq_config"] = new JsonObject(),
            },
            Attribute = "[LoRA(rank: 4, alpha: 8, Init = LoRAInit.CorDA)]",
            BadAttributes = new[]
            {
                ("[LoRA(rank: 16, Init = LoRAInit.CorDA)]", "Linear(8, 12)", new[] { "PEFT0004" }),
                ("[LoRA(rank: 4, CorDAMethod = CorDAMethod.Kpm)]", "Linear(8, 12)", new[] { "PEFT0038" }),
                ("[DoRA(rank: 4, Init = LoRAInit.CorDA)]", "Linear(8, 12)", new[] { "PEFT0021" }),
            },
        },
        new("corda-kpm-r2", new LoRAOptions(Rank: 2, Alpha: 2, Init: LoRAInit.CorDA, CorDAMethod: CorDAMethod.Kpm), "fc2")
        {
            Calibrate = Calibrate,
            CalibrationRewritesBase = true,
            ExpectedKeys = new[] { "base_model.model.fc2.lora_A.weight", "base_model.model.fc2.lora_B.weight" },
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LORA", ["r"] = 2, ["init_lora_weights"] = "corda", ["corda_config"] = CordaConfig("kpm"),
            },
            Attribute = "[LoRA(rank: 2, alpha: 2, Init = LoRAInit.CorDA, CorDAMethod = CorDAMethod.Kpm)]",
            AttributeLayer = "Linear(12, 8)",
        },
    };
}
