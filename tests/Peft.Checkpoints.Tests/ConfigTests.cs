using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Peft.Checkpoints.Tests;

/// <summary>config.json: typed accessors, unknown keys kept, transformers' formatting.</summary>
public sealed class ConfigTests : IDisposable
{
    private readonly TempDirectory _tmp = new();

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void Typed_accessors_read_a_llama_config()
    {
        var config = TinyLlamaConfig.Create();
        Assert.Equal("llama", config.ModelType);
        Assert.Equal(16, config.HiddenSize);
        Assert.Equal(2, config.NumAttentionHeads);
        Assert.Equal(1, config.NumKeyValueHeads);
        Assert.Equal(2, config.NumHiddenLayers);
        Assert.Equal(24, config.IntermediateSize);
        Assert.Equal(24, config.VocabSize);
        Assert.Equal(1e-6, config.RmsNormEps);
        Assert.Equal(10000.0, config.RopeTheta);
        Assert.False(config.TieWordEmbeddings);
        Assert.False(config.TiesWordEmbeddings);
        Assert.Equal("float32", config.TorchDType);
        Assert.Equal("silu", config.Json["hidden_act"]!.GetValue<string>());
        Assert.Null(config.MaxPositionEmbeddings);
    }

    [Fact]
    public void Gpt2_spellings_and_transformers_defaults_are_honoured()
    {
        var config = HfConfig.Parse("""{"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "dtype": "bfloat16"}""");
        Assert.Equal(768, config.HiddenSize);
        Assert.Equal(12, config.NumAttentionHeads);
        Assert.Equal(12, config.NumHiddenLayers);
        Assert.Equal(1024, config.MaxPositionEmbeddings);
        Assert.Null(config.TieWordEmbeddings);
        Assert.True(config.TiesWordEmbeddings);   // PretrainedConfig's default
        Assert.Equal("bfloat16", config.TorchDType);
        Assert.True(HfConfig.TryParseTorchDType(config.TorchDType, out var dtype));
        Assert.Equal(ScalarType.BFloat16, dtype);
        Assert.True(HfConfig.TryParseTorchDType("torch.float16", out dtype));
        Assert.Equal(ScalarType.Float16, dtype);
        Assert.False(HfConfig.TryParseTorchDType("int8", out _));
    }

    [Fact]
    public void Save_keeps_unknown_keys_sorts_them_and_writes_atomically()
    {
        var config = HfConfig.Parse("""{"zeta": {"b": 1, "a": [true]}, "model_type": "llama", "rope_scaling": null}""");
        config.HiddenSize = 32;
        config.TieWordEmbeddings = true;
        var path = Path.Combine(_tmp.Path, "config.json");
        config.Save(path);
        var text = File.ReadAllText(path);
        Assert.Equal("{\n  \"hidden_size\": 32,\n  \"model_type\": \"llama\",\n  \"rope_scaling\": null,\n  \"tie_word_embeddings\": true,\n  \"zeta\": {\n    \"a\": [\n      true\n    ],\n    \"b\": 1\n  }\n}\n", text.ReplaceLineEndings("\n"));
        Assert.Single(Directory.GetFiles(_tmp.Path));

        var loaded = HfConfig.Load(path);
        Assert.Equal(32, loaded.HiddenSize);
        Assert.True(loaded.TieWordEmbeddings);
        Assert.Equal(1, loaded.Json["zeta"]!["b"]!.GetValue<int>());
    }

    [Fact]
    public void Saving_a_model_sets_torch_dtype_without_changing_the_callers_config()
    {
        var config = TinyLlamaConfig.Create();
        config.Json["custom"] = "kept";
        using var model = TinyLlamaForCausalLM.Create(51);
        var dir = _tmp.Sub("m");
        HfCheckpoint.Save(model, dir, config, new CheckpointSaveOptions { DType = Peft.Serialization.SafetensorsDType.F16 });
        Assert.Equal("float32", config.TorchDType);
        var written = HfConfig.Load(Path.Combine(dir, "config.json"));
        Assert.Equal("float16", written.TorchDType);
        Assert.Equal("kept", written.Json["custom"]!.GetValue<string>());
        Assert.Equal(config.HiddenSize, written.HiddenSize);
    }

    [Fact]
    public void An_accessor_on_a_changed_document_names_the_field()
    {
        var config = new HfConfig(new JsonObject { ["vocab_size"] = "many" });
        var e = Assert.Throws<CheckpointFormatException>(() => config.VocabSize);
        Assert.Contains("\"vocab_size\"", e.Message, StringComparison.Ordinal);
        using var model = TinyLlamaForCausalLM.Create(52);
        var dtypeError = Assert.Throws<ArgumentException>(() => HfCheckpoint.Save(model, _tmp.Sub("x"), new HfConfig(),
            new CheckpointSaveOptions { DType = Peft.Serialization.SafetensorsDType.I8 }));
        Assert.Contains("F32, F16 or BF16", dtypeError.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_tmp.Sub("x")));
    }
}
