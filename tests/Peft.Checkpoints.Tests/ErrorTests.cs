using System.Text;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static Peft.Checkpoints.Tests.Support;
using static TorchSharp.torch;

namespace Peft.Checkpoints.Tests;

/// <summary>Broken checkpoints: every problem is named, and the model is left bitwise unchanged.</summary>
public sealed class ErrorTests : IDisposable
{
    private readonly TempDirectory _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private string SaveSingle(string name, int seed = 21)
    {
        var dir = _tmp.Sub(name);
        using var model = TinyLlamaForCausalLM.Create(seed);
        HfCheckpoint.Save(model, dir, TinyLlamaConfig.Create());
        return dir;
    }

    private string SaveSharded(string name)
    {
        var dir = _tmp.Sub(name);
        using var model = TinyLlamaForCausalLM.Create(22);
        HfCheckpoint.Save(model, dir, TinyLlamaConfig.Create(), new CheckpointSaveOptions { MaxShardSizeBytes = 2048 });
        return dir;
    }

    /// <summary>Loads <paramref name="dir"/> into a fresh (adapted) model, expects <typeparamref name="T"/>, checks nothing changed.</summary>
    private static T LoadFails<T>(string dir, CheckpointLoadOptions? options = null)
        where T : Exception
    {
        using var model = TinyLlamaForCausalLM.Create(23, adapted: true);
        var before = Snapshot(model);
        var e = Assert.Throws<T>(() => HfCheckpoint.Load(model, dir, options));
        AssertUnchanged(before, model);
        return e;
    }

    [Fact]
    public void A_missing_tensor_is_named_and_nothing_is_loaded()
    {
        var dir = SaveSingle("missing");
        Rewrite(Path.Combine(dir, "model.safetensors"), t => t.Where(p => p.Key != "model.layers.1.mlp.up_proj.weight").ToList());
        var e = LoadFails<CheckpointMismatchException>(dir);
        Assert.Equal(new[] { "model.layers.1.mlp.up_proj.weight" }, e.Report.Missing);
        Assert.Empty(e.Report.Unexpected);
        Assert.Empty(e.Report.ShapeMismatches);
        Assert.Contains("missing: model.layers.1.mlp.up_proj.weight", e.Message, StringComparison.Ordinal);
        Assert.Contains("nothing was loaded", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wrong_shape_is_named_with_both_shapes_and_nothing_is_loaded()
    {
        var dir = SaveSingle("shape");
        Rewrite(Path.Combine(dir, "model.safetensors"), t => t.Select(p => p.Key == "model.layers.0.self_attn.k_proj.weight"
            ? new KeyValuePair<string, Tensor>(p.Key, zeros(4, TinyLlamaConfig.Hidden)) : p).ToList());
        var e = LoadFails<CheckpointMismatchException>(dir);
        Assert.Equal(new[] { "model.layers.0.self_attn.k_proj.weight: checkpoint [4, 16], model [8, 16]" }, e.Report.ShapeMismatches);
        Assert.Empty(e.Report.Missing);
        Assert.Contains("model.layers.0.self_attn.k_proj.weight: checkpoint [4, 16], model [8, 16]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void All_problems_are_reported_together_and_non_strict_loading_copies_the_rest()
    {
        var dir = SaveSingle("several");
        Rewrite(Path.Combine(dir, "model.safetensors"), t => t
            .Where(p => p.Key != "model.norm.weight")
            .Select(p => p.Key == "lm_head.weight" ? new KeyValuePair<string, Tensor>(p.Key, zeros(3, 3)) : p)
            .Append(new KeyValuePair<string, Tensor>("model.layers.0.self_attn.rotary_emb.inv_freq", ones(4)))
            .ToList());
        var e = LoadFails<CheckpointMismatchException>(dir);
        Assert.Equal(new[] { "model.norm.weight" }, e.Report.Missing);
        Assert.Equal(new[] { "model.layers.0.self_attn.rotary_emb.inv_freq" }, e.Report.Unexpected);
        Assert.Single(e.Report.ShapeMismatches);
        Assert.StartsWith("lm_head.weight:", e.Report.ShapeMismatches[0], StringComparison.Ordinal);
        foreach (var part in new[] { "missing: model.norm.weight", "unexpected: model.layers.0.self_attn.rotary_emb.inv_freq", "lm_head.weight: checkpoint [3, 3], model [24, 16]" })
        {
            Assert.Contains(part, e.Message, StringComparison.Ordinal);
        }

        using var source = TinyLlamaForCausalLM.Create(21);
        using var model = TinyLlamaForCausalLM.Create(24);
        var before = Params(model).ToDictionary(p => p.Key, p => Bytes(p.Value));
        var report = HfCheckpoint.Load(model, dir, new CheckpointLoadOptions { Strict = false });
        Assert.False(report.IsComplete);
        Assert.Equal(19, report.Loaded.Count);
        var expected = Params(source);
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.Equal(name is "model.norm.weight" or "lm_head.weight" ? before[name] : Bytes(expected[name]), Bytes(p));
        }
    }

    [Fact]
    public void A_corrupt_safetensors_header_names_the_file()
    {
        var dir = SaveSingle("corrupt");
        var file = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        bytes[8] = (byte)'[';   // the JSON header now starts with an array
        File.WriteAllBytes(file, bytes);
        var e = LoadFails<CheckpointFormatException>(dir);
        Assert.Equal(file, e.FilePath);
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
        Assert.IsType<SafetensorsFormatException>(e.InnerException);

        // A header length pointing past the end of the file.
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (long)bytes.Length * 2);
        File.WriteAllBytes(file, bytes);
        e = LoadFails<CheckpointFormatException>(dir);
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_corrupt_shard_names_the_shard()
    {
        var dir = SaveSharded("corrupt-shard");
        var shard = Path.Combine(dir, HfCheckpoint.ShardName(2, Directory.GetFiles(dir, "model-*").Length));
        File.WriteAllBytes(shard, new byte[] { 1, 2, 3 });
        var e = LoadFails<CheckpointFormatException>(dir);
        Assert.Equal(shard, e.FilePath);
        Assert.Contains(shard, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_shard_missing_from_disk_is_named_with_the_tensors_it_should_hold()
    {
        var dir = SaveSharded("missing-shard");
        var index = ReadJson(Path.Combine(dir, HfCheckpoint.IndexFileName));
        int count = Directory.GetFiles(dir, "model-*").Length;
        var shardName = HfCheckpoint.ShardName(count, count);
        var tensorInShard = index["weight_map"]!.AsObject().First(p => p.Value!.GetValue<string>() == shardName).Key;
        File.Delete(Path.Combine(dir, shardName));

        var e = LoadFails<CheckpointFormatException>(dir);
        Assert.Equal(Path.Combine(dir, shardName), e.FilePath);
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
        Assert.Contains(tensorInShard, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_index_entry_for_a_tensor_absent_from_its_shard_names_tensor_and_shard()
    {
        var dir = SaveSharded("bad-index");
        var indexPath = Path.Combine(dir, HfCheckpoint.IndexFileName);
        var index = ReadJson(indexPath);
        var map = index["weight_map"]!.AsObject();
        int count = Directory.GetFiles(dir, "model-*").Length;
        var first = HfCheckpoint.ShardName(1, count);
        var moved = map.First(p => p.Value!.GetValue<string>() != first).Key;
        map[moved] = first;
        File.WriteAllText(indexPath, index.ToJsonString());

        var e = LoadFails<CheckpointFormatException>(dir);
        Assert.Equal(Path.Combine(dir, first), e.FilePath);
        Assert.Contains($"maps tensor '{moved}' to this shard", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_index_that_is_not_json_or_names_paths_outside_the_directory_is_rejected()
    {
        var dir = SaveSharded("index-json");
        var indexPath = Path.Combine(dir, HfCheckpoint.IndexFileName);
        var original = File.ReadAllText(indexPath);
        File.WriteAllText(indexPath, "{\"weight_map\": ");
        Assert.Equal(indexPath, LoadFails<CheckpointFormatException>(dir).FilePath);

        var index = (JsonObject)JsonNode.Parse(original)!;
        var map = index["weight_map"]!.AsObject();
        map[map.First().Key] = "../elsewhere.safetensors";
        File.WriteAllText(indexPath, index.ToJsonString());
        var e = LoadFails<CheckpointFormatException>(dir);
        Assert.Contains("../elsewhere.safetensors", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"model_type\": \"llama\", ", "not valid JSON")]
    [InlineData("[1, 2]", "must be a JSON object")]
    [InlineData("{\"hidden_size\": \"sixteen\"}", "\"hidden_size\" must be an integer in [1, 2147483647], not the string \"sixteen\"")]
    [InlineData("{\"tie_word_embeddings\": 1}", "\"tie_word_embeddings\" must be true or false, not 1")]
    [InlineData("{\"rms_norm_eps\": \"1e-6\"}", "\"rms_norm_eps\" must be a finite number > 0 and <= 1, not the string \"1e-6\"")]
    public void An_invalid_config_json_names_the_file_and_the_problem(string json, string problem)
    {
        var dir = SaveSingle("config-" + Math.Abs(json.GetHashCode(StringComparison.Ordinal)));
        var configPath = Path.Combine(dir, "config.json");
        File.WriteAllText(configPath, json, Encoding.UTF8);
        var e = LoadFails<CheckpointFormatException>(dir);
        Assert.Equal(configPath, e.FilePath);
        Assert.Contains(configPath, e.Message, StringComparison.Ordinal);
        Assert.Contains(problem, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_config_json_or_missing_weights_is_reported()
    {
        var dir = SaveSingle("no-config");
        File.Delete(Path.Combine(dir, "config.json"));
        Assert.Contains("config.json", LoadFails<CheckpointFormatException>(dir).Message, StringComparison.Ordinal);

        var empty = _tmp.Sub("no-weights");
        Directory.CreateDirectory(empty);
        TinyLlamaConfig.Create().Save(Path.Combine(empty, "config.json"));
        File.WriteAllBytes(Path.Combine(empty, "pytorch_model.bin"), [0]);
        var e = LoadFails<CheckpointFormatException>(empty);
        Assert.Contains("neither model.safetensors nor model.safetensors.index.json", e.Message, StringComparison.Ordinal);
        Assert.Contains("pytorch_model.bin", e.Message, StringComparison.Ordinal);

        Assert.Contains("does not exist", LoadFails<CheckpointFormatException>(_tmp.Sub("nowhere")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Loading_into_a_merged_model_is_refused()
    {
        var dir = SaveSingle("merged");
        using var model = TinyLlamaForCausalLM.Create(25, adapted: true);
        using (no_grad())
        {
            foreach (var p in model.AdapterParameters()) p.normal_(0, 0.1);
        }
        model.Merge();
        var before = Snapshot(model);
        var e = Assert.Throws<InvalidOperationException>(() => HfCheckpoint.Load(model, dir));
        Assert.Contains("Unmerge", e.Message, StringComparison.Ordinal);
        AssertUnchanged(before, model);
    }

    [Fact]
    public void Mixed_dtypes_cannot_be_kept_and_nothing_is_loaded()
    {
        var dir = SaveSingle("mixed");
        Rewrite(Path.Combine(dir, "model.safetensors"), t => t.Select(p => p.Key == "model.norm.weight"
            ? new KeyValuePair<string, Tensor>(p.Key, p.Value.to(ScalarType.Float16)) : p).ToList());
        var e = LoadFails<InvalidOperationException>(dir, new CheckpointLoadOptions { KeepCheckpointDType = true });
        Assert.Contains("mixes floating-point dtypes", e.Message, StringComparison.Ordinal);
    }
}
