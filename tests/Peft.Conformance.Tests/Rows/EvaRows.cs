using System.Text.Json.Nodes;
using TorchSharp;

namespace Peft.Conformance.Tests;

/// <summary>EVA rows: LoRA's keys and LoraConfig fields with init_lora_weights "eva" and PEFT's eva_config; the rows run
/// <c>InitializeEva</c> on calibration batches after applying the targets, so every check (identity at init: B = 0, save and
/// load, where the load creates each layer's adapter from r, rank_pattern and alpha_pattern, peft merge) sees the ranks EVA
/// redistributed.</summary>
public static class EvaRows
{
    /// <summary>The rows.</summary>
    public static readonly ConformanceCase[] Cases =
    {
        new("eva-r2", new LoRAOptions(Rank: 2, Alpha: 4, Init: LoRAInit.EVA), "fc1", "fc2")
        {
            Calibrate = Calibrate,
            ExpectedKeys = new[] { "fc1", "fc2" }.SelectMany(m => new[] { "lora_A.weight", "lora_B.weight" }.Select(n => $"base_model.model.{m}.{n}")).ToArray(),
            ConfigKeys = LoRARows.LoraConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "LORA", ["r"] = 2, ["lora_alpha"] = 4.0, ["use_dora"] = false, ["init_lora_weights"] = "eva",
                ["eva_config"] = new JsonObject
                {
                    ["rho"] = 2.0, ["tau"] = 0.99, ["use_label_mask"] = true, ["label_mask_value"] = -100, ["whiten"] = false, ["adjust_scaling_factors"] = true,
                },
                ["loftq_config"] = new JsonObject(),
            },
            Attribute = "[LoRA(rank: 2, alpha: 4, Init = LoRAInit.EVA)]",
            BadAttributes = new[]
            {
                ("[DoRA(rank: 2, Init = LoRAInit.EVA)]", "Linear(8, 12)", new[] { "PEFT0021" }),
                ("[LoRA(rank: 2, Init = LoRAInit.EVA, PissaIterations = 2)]", "Linear(8, 12)", new[] { "PEFT0021" }),
                ("[LoRA(rank: 5, Init = LoRAInit.EVA)]", "Linear(8, 12)", new[] { "PEFT0043" }),
            },
        },
    };

    /// <summary>EVA on four fixed batches of token ids (PEFT's defaults).</summary>
    private static void Calibrate(TinyModel model)
    {
        var generator = new torch.Generator(5);
        var batches = Enumerable.Range(0, 4).Select(_ => torch.randint(0, TinyModel.Vocabulary, new long[] { 4, 6 }, generator: generator)).ToList();
        try
        {
            model.InitializeEva(batches, (ids, _) => model.call(ids).Dispose());
        }
        finally
        {
            foreach (var b in batches) b.Dispose();
        }
    }
}
