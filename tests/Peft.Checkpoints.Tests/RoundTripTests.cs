using Peft.Serialization;
using TorchSharp;
using static Peft.Checkpoints.Tests.Support;
using static TorchSharp.torch;

namespace Peft.Checkpoints.Tests;

/// <summary>Save then load in the Hugging Face layout: single file, shards, dtypes, annotated models, merged export.</summary>
public sealed class RoundTripTests : IDisposable
{
    private readonly TempDirectory _tmp = new();

    public void Dispose() => _tmp.Dispose();

    /// <summary>transformers' LlamaForCausalLM state-dict keys for this config.</summary>
    public static string[] HfLlamaKeys()
    {
        var keys = new List<string> { "lm_head.weight", "model.embed_tokens.weight", "model.norm.weight" };
        for (int i = 0; i < TinyLlamaConfig.Layers; i++)
        {
            foreach (var p in new[] { "q_proj", "k_proj", "v_proj", "o_proj" }) keys.Add($"model.layers.{i}.self_attn.{p}.weight");
            foreach (var p in new[] { "gate_proj", "up_proj", "down_proj" }) keys.Add($"model.layers.{i}.mlp.{p}.weight");
            keys.Add($"model.layers.{i}.input_layernorm.weight");
            keys.Add($"model.layers.{i}.post_attention_layernorm.weight");
        }
        return keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
    }

    [Fact]
    public void Single_file_round_trip_is_bitwise_and_uses_transformers_names()
    {
        var dir = _tmp.Sub("single");
        using var source = TinyLlamaForCausalLM.Create(1);
        HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create());

        Assert.Equal(new[] { "config.json", "model.safetensors" }, Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(HfLlamaKeys(), HeaderNames(Path.Combine(dir, "model.safetensors")).Order(StringComparer.Ordinal));
        using (var reader = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors")))
        {
            Assert.Equal("pt", reader.Metadata["format"]);
        }

        using var target = TinyLlamaForCausalLM.Create(2);
        using var before = Logits(target);
        var report = HfCheckpoint.Load(target, dir);
        Assert.True(report.IsComplete);
        Assert.Equal(21, report.Loaded.Count);
        Assert.Empty(report.Tied);

        var expected = Params(source);
        foreach (var (name, p) in target.named_parameters())
        {
            Assert.Equal(Bytes(expected[name]), Bytes(p));
        }
        using var a = Logits(source);
        using var b = Logits(target);
        Assert.Equal(Bytes(a), Bytes(b));
        Assert.NotEqual(Bytes(before), Bytes(b));
    }

    [Fact]
    public void A_small_shard_size_writes_several_shards_with_an_index()
    {
        var dir = _tmp.Sub("sharded");
        using var source = TinyLlamaForCausalLM.Create(3);
        const long limit = 2048;   // embed/lm_head are 1,536 bytes, q/o 1,024, mlp 1,536: several shards
        HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create(), new CheckpointSaveOptions { MaxShardSizeBytes = limit });

        Assert.False(File.Exists(Path.Combine(dir, "model.safetensors")));
        var index = ReadJson(Path.Combine(dir, "model.safetensors.index.json"));
        var weightMap = index["weight_map"]!.AsObject();
        var shardFiles = weightMap.Select(p => p.Value!.GetValue<string>()).Distinct().Order(StringComparer.Ordinal).ToList();
        int n = shardFiles.Count;
        Assert.True(n >= 5, $"only {n} shards");
        Assert.Equal(Enumerable.Range(1, n).Select(i => $"model-{i:D5}-of-{n:D5}.safetensors"), shardFiles);
        Assert.Equal(HfLlamaKeys(), weightMap.Select(p => p.Key));   // sorted, as transformers writes it

        long total = 0;
        foreach (var file in shardFiles)
        {
            using var reader = SafetensorsFile.Open(Path.Combine(dir, file));
            long bytes = reader.Tensors.Sum(t => t.ByteLength);
            Assert.True(bytes <= limit || reader.Tensors.Count == 1, $"{file} holds {bytes} bytes");
            Assert.All(reader.Tensors, t => Assert.Equal(file, weightMap[t.Name]!.GetValue<string>()));
            total += bytes;
        }
        Assert.Equal(total, index["metadata"]!["total_size"]!.GetValue<long>());

        using var checkpoint = HfCheckpoint.Open(dir);
        Assert.True(checkpoint.IsSharded);
        Assert.Equal(n, checkpoint.WeightFiles.Count);
        using var target = TinyLlamaForCausalLM.Create(4);
        Assert.True(checkpoint.LoadInto(target).IsComplete);
        var expected = Params(source);
        foreach (var (name, p) in target.named_parameters()) Assert.Equal(Bytes(expected[name]), Bytes(p));
    }

    [Theory]
    [InlineData(SafetensorsDType.F32, "float32", 0.0)]
    [InlineData(SafetensorsDType.F16, "float16", 1.0 / 2048)]   // 11-bit significand: relative rounding error <= 2^-11 (normal range)
    [InlineData(SafetensorsDType.BF16, "bfloat16", 1.0 / 256)]  // 8-bit significand: <= 2^-8
    public void Every_dtype_round_trips_within_its_rounding(SafetensorsDType dtype, string torchDType, double relative)
    {
        foreach (var sharded in new[] { false, true })
        {
            var dir = _tmp.Sub($"{dtype}-{sharded}");
            using var source = TinyLlamaForCausalLM.Create(5);
            HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create(),
                new CheckpointSaveOptions { DType = dtype, MaxShardSizeBytes = sharded ? 1024 : 1L << 40 });

            using (var checkpoint = HfCheckpoint.Open(dir))
            {
                Assert.Equal(sharded, checkpoint.IsSharded);
                Assert.Equal(torchDType, checkpoint.Config.TorchDType);
                Assert.All(checkpoint.TensorNames, name => Assert.Equal(dtype, checkpoint.GetInfo(name).DType));
            }

            using var target = TinyLlamaForCausalLM.Create(6);
            HfCheckpoint.Load(target, dir);
            var expected = Params(source);
            foreach (var (name, p) in target.named_parameters())
            {
                Assert.Equal(ScalarType.Float32, p.dtype);
                using var original = expected[name].detach();
                // Exactly the original rounded to the dtype (round to nearest even) and back ...
                using var rounded = original.to(dtype.ToScalarType()).to(ScalarType.Float32);
                Assert.Equal(Bytes(rounded), Bytes(p));
                // ... which is within the dtype's relative rounding error.
                using var error = (p.detach() - original).abs();
                // (F16 subnormals, below 2^-14, have an absolute error of at most half their spacing, 2^-25.)
                using var bound = original.abs() * relative + (dtype == SafetensorsDType.F16 ? Math.Pow(2, -25) : 0);
                Assert.True(error.le(bound).all().item<bool>(), $"{dtype} {name}: max error {error.max().item<float>()}");
                if (dtype != SafetensorsDType.F32)
                {
                    Assert.NotEqual(Bytes(original), Bytes(p));
                }
            }
        }
    }

    [Fact]
    public void KeepCheckpointDType_gives_the_model_the_checkpoints_dtype()
    {
        var dir = _tmp.Sub("bf16");
        using var source = TinyLlamaForCausalLM.Create(7);
        HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create(), new CheckpointSaveOptions { DType = SafetensorsDType.BF16 });

        using var target = TinyLlamaForCausalLM.Create(8);
        HfCheckpoint.Load(target, dir, new CheckpointLoadOptions { KeepCheckpointDType = true });
        var expected = Params(source);
        foreach (var (name, p) in target.named_parameters())
        {
            Assert.Equal(ScalarType.BFloat16, p.dtype);
            using var rounded = expected[name].detach().to(ScalarType.BFloat16);
            Assert.Equal(Bytes(rounded), Bytes(p));
        }
    }

    [Fact]
    public void Adapter_wrapping_leaves_the_base_checkpoint_keys_unchanged()
    {
        using var plain = TinyLlamaForCausalLM.Create(9);
        using var adapted = TinyLlamaForCausalLM.Create(9, adapted: true);
        Assert.NotEmpty(adapted.AdapterParameters());
        Assert.Contains(adapted.named_parameters(), p => p.name == "model.layers.0.self_attn.q_proj.default.lora_A.weight");

        var plainDir = _tmp.Sub("plain");
        var adaptedDir = _tmp.Sub("adapted");
        HfCheckpoint.Save(plain, plainDir, TinyLlamaConfig.Create());
        HfCheckpoint.Save(adapted, adaptedDir, TinyLlamaConfig.Create());
        var plainKeys = HeaderNames(Path.Combine(plainDir, "model.safetensors")).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(HfLlamaKeys(), plainKeys);
        Assert.Equal(plainKeys, HeaderNames(Path.Combine(adaptedDir, "model.safetensors")).Order(StringComparer.Ordinal));

        // A plain base checkpoint loads strictly into the annotated model: adapter parameters are not "missing".
        using var fresh = TinyLlamaForCausalLM.Create(10, adapted: true);
        var adapterBefore = fresh.AdapterParameters().Select(Bytes).ToList();
        var report = HfCheckpoint.Load(fresh, plainDir);
        Assert.True(report.IsComplete);
        Assert.DoesNotContain(report.Loaded, n => n.Contains("lora", StringComparison.Ordinal));
        Assert.Equal(adapterBefore, fresh.AdapterParameters().Select(Bytes).ToList());
        // LoRA B starts at zero: the adapted model computes the plain model's logits.
        using var a = Logits(plain);
        using var b = Logits(fresh);
        Assert.True(a.allclose(b, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void A_merged_model_exports_as_a_plain_checkpoint_with_the_same_outputs()
    {
        using var adapted = TinyLlamaForCausalLM.Create(11, adapted: true);
        using (no_grad())
        {
            foreach (var p in adapted.AdapterParameters()) p.normal_(0, 0.3);
        }
        using var adaptedLogits = Logits(adapted);
        adapted.Merge();
        var dir = _tmp.Sub("merged");
        HfCheckpoint.Save(adapted, dir, TinyLlamaConfig.Create());
        Assert.DoesNotContain(HeaderNames(Path.Combine(dir, "model.safetensors")), n => n.Contains("lora", StringComparison.Ordinal));

        using var plain = TinyLlamaForCausalLM.Create(12);
        using var plainBefore = Logits(plain);
        HfCheckpoint.Load(plain, dir);
        using var plainLogits = Logits(plain);
        Assert.True(adaptedLogits.allclose(plainLogits, rtol: 1e-4, atol: 1e-5));
        Assert.False(plainBefore.allclose(plainLogits, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void Saving_over_another_layout_removes_the_old_weight_files()
    {
        var dir = _tmp.Sub("relayout");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{}");
        using var model = TinyLlamaForCausalLM.Create(13);
        HfCheckpoint.Save(model, dir, TinyLlamaConfig.Create(), new CheckpointSaveOptions { MaxShardSizeBytes = 1024 });
        Assert.True(Directory.GetFiles(dir, "model-*-of-*.safetensors").Length > 1);

        HfCheckpoint.Save(model, dir, TinyLlamaConfig.Create());
        Assert.Equal(new[] { "config.json", "model.safetensors", "tokenizer.json" },
            Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        HfCheckpoint.Save(model, dir, TinyLlamaConfig.Create(), new CheckpointSaveOptions { MaxShardSizeBytes = 4096 });
        var files = Directory.GetFiles(dir).Select(Path.GetFileName).ToList();
        Assert.DoesNotContain("model.safetensors", files);
        Assert.Contains("model.safetensors.index.json", files);
        Assert.Contains("tokenizer.json", files);
        Assert.DoesNotContain(files, f => f!.EndsWith(".tmp", StringComparison.Ordinal));
        using var checkpoint = HfCheckpoint.Open(dir);
        Assert.Equal(files.Count(f => f!.StartsWith("model-", StringComparison.Ordinal)), checkpoint.WeightFiles.Count);
    }
}
