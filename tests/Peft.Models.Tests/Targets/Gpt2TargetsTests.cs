using System.Text.Json.Nodes;
using Peft.Models.Gpt2;
using Peft.Models.Tests.Gpt2;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Targets;

/// <summary>
/// Configuration targeting on GPT-2: every Conv1D layer (c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) is reachable, the
/// adapter file says fan_in_fan_out as PEFT's do, and AdapterFiles.Load re-creates the adapter from the file's targets.
/// </summary>
[Collection(TinyGpt2.Collection)]
public sealed class Gpt2TargetsTests
{
    private static readonly string[] Conv1D = { "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj" };

    [Fact]
    public void AllLinearAdaptsEveryConv1DLayerAndRoundTripsThroughPeftFiles()
    {
        string dir = TinyGpt2.TempDir("targets");
        try
        {
            using var ids = TinyGpt2.RandomIds(3, 2, 9);
            Tensor expected;
            using (var model = TinyGpt2.Create(4))
            {
                var adapted = model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 4, Alpha: 8)));
                var want = Enumerable.Range(0, TinyGpt2.Layers).SelectMany(i => Conv1D.Select(n => $"transformer.h.{i}.{n}"));
                Assert.Equal(want.OrderBy(n => n, StringComparer.Ordinal), adapted.OrderBy(n => n, StringComparer.Ordinal));

                // r·(in + out) per layer: c_attn 32->96, attn.c_proj 32->32, c_fc 32->128, mlp.c_proj 128->32.
                long perBlock = 4 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32));
                Assert.Equal(TinyGpt2.Layers * perBlock, model.GetTrainableSummary().TrainableParameters);

                using (no_grad())
                {
                    foreach (var (name, p) in model.named_parameters())
                    {
                        if (name.Contains("lora_B", StringComparison.Ordinal)) p.normal_(0, 0.05);
                    }
                }
                using (no_grad()) expected = model.call(ids);
                model.SavePretrained(Path.Combine(dir, "base"));
                AdapterFiles.Save(model, Path.Combine(dir, "adapter"), options: new AdapterSaveOptions { TaskType = "CAUSAL_LM" });
            }

            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter", AdapterFiles.ConfigFileName)))!;
            Assert.True((bool)config["fan_in_fan_out"]!);
            Assert.Equal(new[] { "c_attn", "c_fc", "c_proj" }, config["target_modules"]!.AsArray().Select(n => (string)n!).Order(StringComparer.Ordinal));

            // A fresh stock model: AdapterFiles.Load creates "default" from the file's target_modules (c_attn, c_proj,
            // c_fc, with fan_in_fan_out) on all four Conv1D layers per block, bit for bit.
            using var fresh = Gpt2LMHeadModel.FromPretrained(Path.Combine(dir, "base"));
            AdapterFiles.Load(fresh, Path.Combine(dir, "adapter"));
            Assert.Equal(TinyGpt2.Layers * 4, fresh.AdaptedLayers().Count(l => l.Layer.HasAdapter(AdapterNames.Default)));
            fresh.eval();
            using (no_grad()) Assert.True(TinyGpt2.BitwiseEqual(expected, fresh.call(ids)), "reloaded all-linear adapter gives different logits");
            expected.Dispose();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
