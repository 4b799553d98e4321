using System.Text.Json.Nodes;
using Peft.Models.Llama;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

/// <summary><c>peft inspect</c> reads PEFT's prefix-tuning directories; <c>peft merge</c> refuses them with the reason.</summary>
public sealed class PrefixTuningCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-prefix-cli-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void InspectShowsPeftsFieldsAndTheTableAndMergeRefusesIt()
    {
        manual_seed(3);
        using var model = new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = 40, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 3, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64,
        });
        model.AddPrefixTuning(new PrefixTuningConfig(5, Projection: true, EncoderHiddenSize: 7));
        string adapter = Path.Combine(_dir, "prefix");
        model.SavePrefixTuning(adapter, taskType: "CAUSAL_LM");

        var inspect = CliRunner.Run("inspect", adapter, "--json");
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        var json = JsonNode.Parse(inspect.Output)!.AsObject();
        Assert.Equal("PREFIX_TUNING", (string?)json["peft_type"]);
        Assert.Equal(5, (int)json["num_virtual_tokens"]!);
        Assert.Equal(3, (int)json["num_layers"]!);
        Assert.Equal(8, (int)json["token_dim"]!);   // 2 key/value heads of width 4
        Assert.True((bool)json["prefix_projection"]!);
        Assert.Equal(5 * 3 * 2 * 8, (long)json["parameters"]!);
        Assert.Equal("prompt_embeddings", (string?)json["tensors"]![0]!["name"]);
        Assert.Contains("num_virtual_tokens: 5", CliRunner.Run("inspect", adapter).Output, StringComparison.Ordinal);

        string weights = Path.Combine(_dir, "base.safetensors");
        using (var w = ones(2, 2)) Peft.Serialization.SafetensorsFile.Write(weights, [new("w", w)]);
        var merge = CliRunner.Run("merge", "--base", weights, "--adapter", adapter, "--output", Path.Combine(_dir, "out.safetensors"));
        Assert.NotEqual(0, merge.ExitCode);
        Assert.Contains("nothing to merge", merge.Error + merge.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir, "out.safetensors")));
    }
}
