using Peft.Models.Llama;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

/// <summary><c>peft inspect</c> of a LoFiT directory (this library's format: settings, heads per attention, output
/// projections, tensors) and <c>peft merge</c> into a base safetensors file through the model merge's own fold: the merged
/// file holds exactly the weights <see cref="LoFiT.MergeLoFiT"/> gives, and a bias-free o_proj refuses offsets.</summary>
public sealed class LoFiTCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Inspect_shows_the_heads_and_merge_folds_the_vectors_as_the_model_does()
    {
        using var model = Llama(outputBias: true);
        SafetensorsFile.Write(_dir["base.safetensors"], model.state_dict().Select(p => new KeyValuePair<string, Tensor>(p.Key, p.Value.detach().contiguous())));
        var selection = new LoFiTHeadSelection([new(0, 3), new(2, 1), new(2, 0)]);
        model.AddLoFiT(new LoFiTConfig(LoFiTComponents.ScaleAndBias, L1Lambda: 0.001, InitStd: 0.3), selection);
        model.SaveLoFiT(_dir["lofit"]);

        var json = CliRunner.InspectJson(_dir["lofit"]);
        Assert.Equal("LOFIT", json["peft_type"]!.GetValue<string>());
        Assert.Equal("LoFiT", json["method"]!.GetValue<string>());
        Assert.Equal("scale_and_bias", json["components"]!.GetValue<string>());
        Assert.Equal(3, json["selected_heads"]!.GetValue<int>());
        Assert.Equal(["model.layers.0.self_attn", "model.layers.2.self_attn"], json["modules"]!.AsArray().Select(m => m!["module"]!.GetValue<string>()));
        Assert.Equal("model.layers.2.self_attn.o_proj", json["modules"]![1]!["output_projection"]!.GetValue<string>());
        Assert.Equal([0, 1], json["modules"]![1]!["heads"]!.AsArray().Select(h => h!.GetValue<int>()));
        Assert.Equal(2 * 3 * 8, json["trainable_parameters"]!.GetValue<long>());
        var text = CliRunner.Run("inspect", _dir["lofit"]);
        Assert.Contains("model.layers.2.self_attn.lofit_v  F32   [2, 8]", text.Output, StringComparison.Ordinal);

        var merge = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["lofit"], "-o", _dir["merged.safetensors"]);
        Assert.True(merge.ExitCode == 0, merge.ToString());
        Assert.Contains("merged model.layers.2.self_attn.o_proj.weight (LoFiT)", merge.Output, StringComparison.Ordinal);
        Assert.Contains("merged model.layers.0.self_attn.o_proj.bias (LoFiT)", merge.Output, StringComparison.Ordinal);

        var ids = arange(12, dtype: ScalarType.Int64).remainder(60).view(2, 6);
        using var _ = no_grad();
        var adapted = model.Forward(ids, null);
        model.MergeLoFiT();
        var expected = model.state_dict();
        using var reader = SafetensorsFile.Open(_dir["merged.safetensors"]);
        using var fresh = Llama(outputBias: true);
        var freshState = fresh.state_dict();
        foreach (var info in reader.Tensors)
        {
            using var t = reader.ReadTensor(info.Name);
            Assert.True(t.shape.SequenceEqual(expected[info.Name].shape) && (t - expected[info.Name]).abs().max().item<float>() == 0, $"{info.Name}: the file merge differs from the model merge");
            freshState[info.Name].copy_(t);
        }

        Assert.True((fresh.Forward(ids, null) - adapted).abs().max().item<float>() < 1e-4, "the merged file does not reproduce the adapted model");
    }

    [Fact]
    public void Merge_refuses_offsets_for_a_bias_free_o_proj_and_writes_nothing()
    {
        using var model = Llama(outputBias: false);
        SafetensorsFile.Write(_dir["base.safetensors"], model.state_dict().Select(p => new KeyValuePair<string, Tensor>(p.Key, p.Value.detach().contiguous())));
        model.AddLoFiT(new LoFiTConfig(LoFiTComponents.Bias), new LoFiTHeadSelection([new(1, 2)]));
        model.SaveLoFiT(_dir["lofit"]);
        var merge = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["lofit"], "-o", _dir["merged.safetensors"]);
        Assert.NotEqual(0, merge.ExitCode);
        Assert.Contains("model.layers.1.self_attn.o_proj.bias", merge.Error, StringComparison.Ordinal);
        Assert.Contains("keep the adapter unmerged", merge.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
    }

    private static LlamaForCausalLM Llama(bool outputBias)
    {
        manual_seed(3);
        var model = new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = 64, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 3, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64,
            OutputBias = outputBias,
        });
        model.eval();
        return model;
    }
}
