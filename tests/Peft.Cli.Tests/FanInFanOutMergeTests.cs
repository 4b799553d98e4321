using System.Text.Json.Nodes;
using Peft.Models.Gpt2;
using Peft.Serialization;
using Peft.Training;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

/// <summary>
/// <c>peft merge</c> of a GPT-2 adapter (<c>fan_in_fan_out: true</c>): the base file stores Conv1D weights [in, out], so
/// the update is added transposed, as PEFT's merge does.
/// </summary>
public sealed class FanInFanOutMergeTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Gpt2_adapter_merges_transposed_into_the_Conv1D_weights()
    {
        Seeding.SetSeed(5);
        using var model = new Gpt2LMHeadModel(new Gpt2Config
        {
            VocabSize = 40, NEmbd = 32, NLayer = 2, NHead = 4, NPositions = 16, ResidPdrop = 0, EmbdPdrop = 0, AttnPdrop = 0,
        });
        model.eval();
        model.ApplyTargets(new PeftTargets(Gpt2Targets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));   // PEFT's default for GPT-2: c_attn
        using (no_grad())
        {
            foreach (var (name, parameter) in model.named_parameters())
            {
                if (name.Contains("lora_B", StringComparison.Ordinal)) parameter.copy_(randn_like(parameter) * 0.2);
            }
        }

        string baseDir = _dir["base"], adapterDir = _dir["adapter"], mergedDir = _dir["merged"];
        model.SavePretrained(baseDir);   // base weights only, c_attn as [in, out]
        AdapterFiles.Save(model, adapterDir, options: new AdapterSaveOptions { TaskType = "CAUSAL_LM" });
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, AdapterFiles.ConfigFileName)))!;
        Assert.True((bool)config["fan_in_fan_out"]!);

        // The base as openai-community/gpt2 ships it: GPT2Model keys without "transformer." (h.0.attn.c_attn.weight, wte.weight).
        string bareBase = Path.Combine(baseDir, "bare.safetensors");
        using (var reader = SafetensorsFile.Open(Path.Combine(baseDir, "model.safetensors")))
        {
            SafetensorsFile.Write(bareBase, reader.Tensors.Select(t => new KeyValuePair<string, Tensor>(
                t.Name.StartsWith("transformer.", StringComparison.Ordinal) ? t.Name["transformer.".Length..] : t.Name, reader.ReadTensor(t.Name))).ToList());
        }

        Directory.CreateDirectory(mergedDir);
        File.Copy(Path.Combine(baseDir, "config.json"), Path.Combine(mergedDir, "config.json"));
        var result = CliRunner.Run("merge", "--base", bareBase, "--adapter", adapterDir,
            "--output", Path.Combine(mergedDir, "model.safetensors"));
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("merged h.0.attn.c_attn.weight F32 [32, 96]", result.Output);

        using var ids = randint(0, 40, new long[] { 2, 7 });
        // Stock models from the files: no adapter (the model family declares none).
        using var merged = Gpt2LMHeadModel.FromPretrained(mergedDir);
        merged.eval();
        using (no_grad())
        {
            using var expected = model.call(ids);
            using var plain = Gpt2LMHeadModel.FromPretrained(baseDir);
            plain.eval();
            // The adapter changes the output, and the merged file reproduces it.
            Assert.True((plain.call(ids) - expected).abs().max().item<float>() > 1e-3);
            double diff = (merged.call(ids) - expected).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"merged file gives logits {diff} away from the adapted model");
        }
    }
}
