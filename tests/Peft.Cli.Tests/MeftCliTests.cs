using Peft.Models.Llama;
using Peft.Serialization;
using Peft.Training;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

/// <summary><c>peft inspect</c> reads a MEFT directory (this library's own format); <c>peft merge</c> refuses it with the
/// reason (no weight can absorb a reversible stack).</summary>
public sealed class MeftCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Inspect_shows_the_configuration_blocks_and_tensors_and_merge_refuses()
    {
        manual_seed(3);
        using var model = new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = 32, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 3, NumAttentionHeads = 2, NumKeyValueHeads = 1, MaxPositionEmbeddings = 16,
        });
        ModelWeights.Save(model, _dir["base.safetensors"]);
        var runner = model.AddMeft(new MeftConfig(AdapterBottleneckDim: 4, NumRevLayers: 2));
        string dir = _dir["meft"];
        model.SaveMeft(dir);

        var result = CliRunner.Run("inspect", dir);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("peft_type: MEFT", result.Output, StringComparison.Ordinal);
        Assert.Contains("f_arch: layer", result.Output, StringComparison.Ordinal);
        Assert.Contains("num_rev_layers: 2", result.Output, StringComparison.Ordinal);
        Assert.Contains("reversible_blocks: 3", result.Output, StringComparison.Ordinal);
        Assert.Contains("model.layers.2.rev_adapters.default.dense1.weight", result.Output, StringComparison.Ordinal);
        long expected = 3 * runner.Config.CountParameters(16);
        Assert.Contains($"trainable parameters: {expected}", result.Output.Replace(",", "", StringComparison.Ordinal), StringComparison.Ordinal);

        var merge = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", dir, "--output", _dir["merged.safetensors"]);
        Assert.NotEqual(0, merge.ExitCode);
        Assert.Contains("reversible stack", merge.ToString(), StringComparison.Ordinal);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
    }
}
