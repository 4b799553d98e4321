using System.Text.Json.Nodes;
using Peft.Checkpoints;
using Peft.Models.Llama;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Llama;

/// <summary>
/// Qwen2 and Llama's bias options in the Llama-style family: config.json decides which projections have biases, the
/// checkpoint must hold exactly those, and settings the port does not model are refused.
/// </summary>
public sealed class Qwen2LayoutTests
{
    private static HfConfig Qwen2Json(string extra = "") => HfConfig.Parse($$"""
        {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 40, "hidden_size": 32,
         "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 64, "tie_word_embeddings": true,
         "hidden_act": "silu", "use_sliding_window": false{{extra}}}
        """);

    [Fact]
    public void Qwen2HasQkvBiasesOnlyAndRoundTripsThroughItsOwnConfig()
    {
        var config = LlamaConfig.FromHf(Qwen2Json());
        Assert.True(config.QkvBias);
        Assert.False(config.OutputBias);
        Assert.False(config.MlpBias);

        manual_seed(3);
        using var model = new LlamaForCausalLM(config);
        var keys = model.state_dict().Keys.ToHashSet();
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", keys);
        Assert.Contains("model.layers.1.self_attn.v_proj.bias", keys);
        Assert.DoesNotContain("model.layers.0.self_attn.o_proj.bias", keys);
        Assert.DoesNotContain("model.layers.0.mlp.down_proj.bias", keys);

        // The q/k/v biases take part in the forward: moving one moves the logits.
        using var ids = randint(0, 40, new long[] { 1, 6 });
        model.eval();
        using var before = model.forward(ids);
        using (no_grad()) model.state_dict()["model.layers.0.self_attn.k_proj.bias"].add_(0.5);
        using var after = model.forward(ids);
        Assert.False(before.allclose(after));

        string dir = TinyLlama.TempDir("qwen2");
        try
        {
            HfCheckpoint.Save(model, dir, config.ToHf());
            var written = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, HfConfig.FileName)))!;
            Assert.Equal("qwen2", (string?)written["model_type"]);
            using var reloaded = LlamaForCausalLM.FromPretrained(dir);
            reloaded.eval();
            Assert.True(TinyLlama.BitwiseEqual(after, reloaded.forward(ids)));

            // A Qwen2 config.json over a checkpoint without the biases: the strict load names them.
            var llamaDir = Path.Combine(dir, "no-bias");
            manual_seed(3);
            using var plain = new LlamaForCausalLM(config with { QkvBias = false });
            HfCheckpoint.Save(plain, llamaDir, config.ToHf());
            var ex = Assert.ThrowsAny<Exception>(() => LlamaForCausalLM.FromPretrained(llamaDir));
            Assert.Contains("model.layers.0.self_attn.q_proj.bias", ex.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void LlamaAttentionAndMlpBiasFlagsAreRead()
    {
        var json = Qwen2Json(""", "attention_bias": true, "mlp_bias": true""");
        json.ModelType = "llama";
        var config = LlamaConfig.FromHf(json);
        Assert.True(config.QkvBias);
        Assert.True(config.OutputBias);
        Assert.True(config.MlpBias);
        var back = config.ToHf();
        Assert.Equal("llama", back.ModelType);
        Assert.True((bool)back.Json["attention_bias"]!);
        Assert.True((bool)back.Json["mlp_bias"]!);
    }

    [Theory]
    [InlineData("rope_scaling", """{"rope_type": "llama3", "factor": 8.0}""")]
    [InlineData("use_sliding_window", "true")]
    [InlineData("hidden_act", "\"gelu\"")]
    public void UnmodelledSettingsAreRefusedByName(string key, string value)
    {
        var json = Qwen2Json();
        json.Json[key] = JsonNode.Parse(value);
        var ex = Assert.Throws<CheckpointFormatException>(() => LlamaConfig.FromHf(json));
        Assert.Equal(key, ex.Field);
        Assert.Contains(key, ex.Message);
    }
}
