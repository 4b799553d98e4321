using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Peft.Checkpoints;
using Peft.Fuzz;
using Peft.Models.Llama;
using Peft.Serialization;
using Peft.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Fuzz.Tests;

/// <summary>
/// Each failure class of issue 9 (part A), reproduced on the fuzzer's seeds by hand: the fuzz suite keeps them fixed
/// in general, these tests name them one by one. Every refusal must be the file kind's documented exception, name the
/// file (and the field), and leave the load target unchanged.
/// </summary>
public sealed class IssueRegressionTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"peft-issue9-{Guid.NewGuid():N}");

    public IssueRegressionTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Mutator.Delete(_dir);

    // ------------------------------------------------------------------ 1. process abort on a damaged RNG state

    [Theory]
    [InlineData("torch.cpu", "size")]
    [InlineData("torch.cpu", "dtype")]
    [InlineData("torch.cpu", "random")]
    [InlineData("torch.cpu", "zero")]
    [InlineData("torch.cpu", "left")]
    [InlineData("torch.cpu", "next")]
    [InlineData("sampler", "zero")]
    [InlineData("sampler", "seeded")]
    public void A_damaged_rng_state_is_refused_before_anything_changes(string key, string damage)
    {
        var checkpoint = Seed("training-checkpoint");
        var rng = Path.Combine(checkpoint, CheckpointStore.RandomStateFileName);
        RewriteTensor(rng, key, state => damage switch
        {
            "size" => cat([state, zeros(1, dtype: ScalarType.Byte)]),
            "dtype" => state.to(ScalarType.Float32),
            "random" => FromBytes(RandomBytes(5056, 1)),
            "zero" => zeros_like(state),
            "left" => Patch(state, 8, BitConverter.GetBytes(0)),
            "next" => Patch(state, 16, BitConverter.GetBytes(625UL)),
            "seeded" => Patch(state, 12, BitConverter.GetBytes(0)),
            _ => throw new ArgumentException(damage),
        });
        UpdateManifestHashes(checkpoint);

        var e = LoadFails<CheckpointException>("training-checkpoint", checkpoint);
        Assert.Equal(rng, e.FilePath);
        Assert.Equal(key, e.Field);
    }

    // ------------------------------------------------------------------ 2. undocumented exception types, unnamed files

    [Theory]
    [InlineData("name-utf8")]
    [InlineData("name-surrogate")]
    [InlineData("metadata-surrogate")]
    [InlineData("dtype-utf8")]
    public void Invalid_text_in_a_safetensors_header_is_a_format_error_naming_the_file(string where)
    {
        var path = Seed("safetensors");
        var bytes = File.ReadAllBytes(path);
        int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = Encoding.UTF8.GetString(bytes, 8, length);
        var edited = where switch
        {
            "name-surrogate" => header.Replace("\"f32\"", "\"f\\ud800\"", StringComparison.Ordinal),
            "metadata-surrogate" => header.Replace("\"fuzz seed\"", "\"\\udc00\"", StringComparison.Ordinal),
            _ => header,
        };
        var headerBytes = Encoding.UTF8.GetBytes(edited);
        if (where == "name-utf8") headerBytes = Replace(headerBytes, "\"f32\""u8.ToArray(), [(byte)'"', 0xC3, 0x28, (byte)'"']);
        if (where == "dtype-utf8") headerBytes = Replace(headerBytes, "\"F16\""u8.ToArray(), [(byte)'"', 0xFF, 0x46, (byte)'"']);
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)headerBytes.Length);
        File.WriteAllBytes(path, [.. prefix, .. headerBytes, .. bytes.AsSpan(8 + length)]);

        var e = LoadFails<SafetensorsFormatException>("safetensors", path);
        Assert.Equal(path, e.FilePath);
        Assert.Contains(where.EndsWith("utf8", StringComparison.Ordinal) ? "not valid UTF-8" : "not valid Unicode", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Duplicate_keys_are_refused_in_config_json_the_index_and_the_manifest()
    {
        var llama = Seed("hf-llama");
        var config = Path.Combine(llama, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"vocab_size\": 32", "\"vocab_size\": 32, \"vocab_size\": 2000000000", StringComparison.Ordinal));
        var e = LoadFails<CheckpointFormatException>("hf-llama", llama);
        Assert.Equal(config, e.FilePath);
        Assert.Contains("vocab_size", e.Message, StringComparison.Ordinal);

        var sharded = Seed("hf-llama-sharded");
        var index = Path.Combine(sharded, HfCheckpoint.IndexFileName);
        var text = File.ReadAllText(index);
        File.WriteAllText(index, text.Replace("\"weight_map\": {", "\"weight_map\": {\n    \"lm_head.weight\": \"model-00001-of-00004.safetensors\",", StringComparison.Ordinal));
        Assert.Equal(index, LoadFails<CheckpointFormatException>("hf-llama-sharded", sharded).FilePath);

        var checkpoint = Seed("training-checkpoint");
        var manifest = Path.Combine(checkpoint, CheckpointStore.ManifestFileName);
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"step\": 3,", "\"step\": 3, \"step\": 0,", StringComparison.Ordinal));
        Assert.Equal(manifest, LoadFails<CheckpointException>("training-checkpoint", checkpoint).FilePath);
    }

    [Theory]
    [InlineData("files", "null")]
    [InlineData("files.trainable.safetensors", "null")]
    [InlineData("parameters", "null")]
    [InlineData("parameters", "[null]")]
    [InlineData("parameters", "[\"fc\", \"fc\"]")]
    [InlineData("format_version", "\"1\"")]
    [InlineData("has_sampler_state", "1")]
    public void Nulls_and_wrong_types_in_a_manifest_are_refused_by_field(string field, string json)
    {
        var checkpoint = Seed("training-checkpoint");
        EditJson(Path.Combine(checkpoint, CheckpointStore.ManifestFileName), root =>
        {
            if (field.StartsWith("files.", StringComparison.Ordinal)) root["files"]!.AsObject()[field["files.".Length..]] = JsonNode.Parse(json);
            else root[field] = JsonNode.Parse(json);
        });
        var e = LoadFails<CheckpointException>("training-checkpoint", checkpoint);
        Assert.StartsWith(field.Split('.')[0], e.Field, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("head_dim", "0")]
    [InlineData("head_dim", "[1]")]
    [InlineData("head_dim", "3")]
    [InlineData("mlp_bias", "8.0")]
    [InlineData("hidden_act", "5")]
    [InlineData("hidden_act", "\"gelu\"")]
    [InlineData("attention_bias", "\"yes\"")]
    [InlineData("num_attention_heads", "3")]
    [InlineData("rope_scaling", "{\"type\": \"linear\"}")]
    public void Wrongly_typed_or_out_of_range_config_fields_name_config_json_and_the_field(string field, string json)
    {
        var llama = Seed("hf-llama");
        var config = Path.Combine(llama, "config.json");
        EditJson(config, root => root[field] = JsonNode.Parse(json));
        var e = LoadFails<CheckpointFormatException>("hf-llama", llama);
        Assert.Equal(config, e.FilePath);
        Assert.Equal(field, e.Field);
        Assert.Contains(config, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("exclude_modules", "\"\"", "default")]
    [InlineData("exclude_modules", "\"\"", "fuzz")]
    [InlineData("target_modules", "\"(\"", "fuzz")]
    [InlineData("target_modules", "[\"\"]", "fuzz")]
    public void Empty_or_invalid_module_selections_are_adapter_format_errors(string field, string json, string adapterName)
    {
        var adapter = Seed("adapter-lora");
        var config = Path.Combine(adapter, AdapterFiles.ConfigFileName);
        EditJson(config, root => root[field] = JsonNode.Parse(json));
        using var model = new FuzzLoraNet();
        var snapshot = new Snapshot(model);
        var e = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, adapter, adapterName));
        Assert.Equal(config, e.FilePath);
        Assert.Equal(field, e.Field);
        Assert.Null(snapshot.Diff());
    }

    [Theory]
    [InlineData("directory")]
    [InlineData("loop")]
    [InlineData("fifo")]
    public void A_file_that_is_a_directory_a_link_loop_or_a_fifo_is_refused_by_name(string what)
    {
        var adapter = Seed("adapter-lora");
        var config = Path.Combine(adapter, AdapterFiles.ConfigFileName);
        var weights = Path.Combine(adapter, AdapterFiles.WeightsFileName);
        Replace(config, what);
        Assert.Equal(config, LoadFails<AdapterFormatException>("adapter-lora", adapter).FilePath);

        // The weights file: AdapterFiles.Load reports a directory there as a missing file (documented), anything else
        // that is not a regular file as a malformed safetensors file.
        var other = Seed("adapter-lora");
        var otherWeights = Path.Combine(other, AdapterFiles.WeightsFileName);
        Replace(otherWeights, what);
        using var load = FileKinds.All.Single(k => k.Name == "adapter-lora").Prepare(other, new Random(1));
        var e = Assert.ThrowsAny<Exception>(load.Load);
        Assert.True(what == "directory" ? e is FileNotFoundException : e is SafetensorsFormatException { FilePath: var path } && path == otherWeights, e.ToString());
        Assert.Contains(other, e.Message, StringComparison.Ordinal);
        Assert.Null(load.Unchanged!());
        _ = weights;
    }

    [Fact]
    public void A_checkpoint_that_does_not_fit_names_its_directory()
    {
        var sharded = Seed("hf-llama-sharded");
        using var model = new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = 32, HiddenSize = 16, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        });
        var snapshot = new Snapshot(model);
        var e = Assert.Throws<CheckpointMismatchException>(() => HfCheckpoint.Load(model, sharded));
        Assert.Equal(sharded, e.FilePath);
        Assert.Contains(sharded, e.Message, StringComparison.Ordinal);
        Assert.Null(snapshot.Diff());
    }

    // ------------------------------------------------------------------ 3. allocations from config values

    [Theory]
    [InlineData("vocab_size", "2000000000")]
    [InlineData("intermediate_size", "200000000")]
    [InlineData("num_hidden_layers", "100000")]
    [InlineData("num_hidden_layers", "2147483647")]
    [InlineData("hidden_size", "1073741824")]
    public void Sizes_the_weights_do_not_have_fail_before_any_allocation(string field, string value)
    {
        var llama = Seed("hf-llama");
        var config = Path.Combine(llama, "config.json");
        EditJson(config, root => root[field] = JsonNode.Parse(value));
        GC.Collect();
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.ThrowsAny<PeftFileException>(() => LlamaForCausalLM.FromPretrained(llama));
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 64L << 20, "more than 64 MiB allocated");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
        Assert.True(e is CheckpointFormatException or CheckpointMismatchException, e.GetType().Name);
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
        Assert.Contains(llama, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("num_virtual_tokens", "100000000")]
    [InlineData("token_dim", "100000000")]
    public void A_new_prompt_adapter_must_fit_its_prompt_embeddings_before_it_is_created(string field, string value)
    {
        var adapter = Seed("adapter-prompt");
        EditJson(Path.Combine(adapter, AdapterFiles.ConfigFileName), root => root[field] = JsonNode.Parse(value));
        using var model = new FuzzPromptNet();
        var snapshot = new Snapshot(model);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var e = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, adapter, "fuzz"));
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 64L << 20);
        Assert.Contains("prompt_embeddings", e.Message, StringComparison.Ordinal);
        Assert.Null(snapshot.Diff());
    }

    [Fact]
    public void A_new_lora_adapter_rank_must_fit_the_weights_before_it_is_created()
    {
        var adapter = Seed("adapter-lora");
        EditJson(Path.Combine(adapter, AdapterFiles.ConfigFileName), root => root["r"] = 2_000_000_000);
        var e = LoadFails<AdapterFormatException>("adapter-lora", adapter, "fuzz");
        Assert.Equal("r", e.Field);
    }

    [Theory]
    [InlineData("config.json")]
    [InlineData("model.safetensors")]
    public void A_link_to_dev_zero_is_refused_at_once(string file)
    {
        var llama = Seed("hf-llama");
        var path = Path.Combine(llama, file);
        File.Delete(path);
        File.CreateSymbolicLink(path, "/dev/zero");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = LoadFails<CheckpointFormatException>("hf-llama", llama);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
        Assert.Equal(path, e.FilePath);
        Assert.Contains("character device", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_json_file_over_the_size_cap_is_refused_without_reading_it()
    {
        var adapter = Seed("adapter-lora");
        var config = Path.Combine(adapter, AdapterFiles.ConfigFileName);
        using (var stream = new FileStream(config, FileMode.Append))
        {
            stream.SetLength(PeftFileLimits.MaxJsonBytes + 1);
        }
        var e = LoadFails<AdapterFormatException>("adapter-lora", adapter);
        Assert.Contains("PeftFileLimits.MaxJsonBytes", e.Message, StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------ 5. silent wrong loads

    [Theory]
    [InlineData("step")]
    [InlineData("data_position")]
    [InlineData("next_learning_rate")]
    [InlineData("total_steps")]
    [InlineData("skipped_steps")]
    [InlineData("has_sampler_state")]
    [InlineData("created_utc")]
    public void A_manifest_without_a_required_field_is_refused(string field)
    {
        var checkpoint = Seed("training-checkpoint");
        var manifest = Path.Combine(checkpoint, CheckpointStore.ManifestFileName);
        EditJson(manifest, root => root.Remove(field));
        var e = LoadFails<CheckpointException>("training-checkpoint", checkpoint);
        Assert.Equal(manifest, e.FilePath);
        Assert.Equal(field, e.Field);
        Assert.Contains("missing", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("9223372036854775807")]
    [InlineData("4")]
    public void An_optimizer_step_beyond_the_checkpoints_step_is_refused(string step)
    {
        var checkpoint = Seed("training-checkpoint");
        var optimizer = Path.Combine(checkpoint, CheckpointStore.OptimizerFileName);
        string key;
        using (var reader = SafetensorsFile.Open(optimizer))
        {
            var metadata = reader.Metadata.ToDictionary();
            key = metadata.Keys.First(k => k.EndsWith("/step", StringComparison.Ordinal));
            metadata[key] = step;
            var tensors = reader.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, reader.ReadTensor(t.Name))).ToList();
            reader.Dispose();
            SafetensorsFile.Write(optimizer, tensors, metadata);
        }
        UpdateManifestHashes(checkpoint);
        var e = LoadFails<CheckpointException>("training-checkpoint", checkpoint);
        Assert.Equal(key, e.Field);
    }

    [Theory]
    [InlineData("hf-llama", "model.safetensors", "model.norm.weight")]
    [InlineData("model-weights", "weights.safetensors", "q_proj.weight")]
    public void Base_weights_with_nan_or_infinity_are_refused_by_tensor_name(string kind, string file, string tensor)
    {
        var artifact = Seed(kind);
        var path = File.Exists(artifact) ? artifact : Path.Combine(artifact, file);
        RewriteTensor(path, tensor, t =>
        {
            var copy = t.clone();
            copy.view(-1)[0] = torch.tensor(float.NaN);
            return copy;
        });
        var e = LoadFails<PeftFileException>(kind, artifact);
        Assert.Equal(tensor, e.Field);
        Assert.Equal(path, e.FilePath);
    }

    [Theory]
    [InlineData("rope_theta", "0")]
    [InlineData("rope_theta", "-1")]
    [InlineData("rope_theta", "1e400")]
    [InlineData("rms_norm_eps", "-1")]
    [InlineData("rms_norm_eps", "0")]
    [InlineData("max_position_embeddings", "0")]
    [InlineData("vocab_size", "0")]
    public void Out_of_range_numbers_in_config_json_are_refused(string field, string raw)
    {
        var llama = Seed("hf-llama");
        var config = Path.Combine(llama, "config.json");
        EditJson(config, root => root[field] = "RAW");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"RAW\"", raw, StringComparison.Ordinal));
        var e = LoadFails<CheckpointFormatException>("hf-llama", llama);
        Assert.Equal(field, e.Field);
        Assert.Equal(config, e.FilePath);
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>A fresh copy of the file kind's seed, under this test's directory.</summary>
    private string Seed(string kind)
    {
        var dir = Path.Combine(_dir, kind + "-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(dir);
        return FileKinds.All.Single(k => k.Name == kind).BuildSeed(dir);
    }

    /// <summary>Loads through the kind's own load case and checks the refusal: type, file named, target unchanged.</summary>
    private static T LoadFails<T>(string kind, string artifact, string? adapterName = null) where T : Exception
    {
        // The adapter kinds pick the adapter name from the case's random source: 0 gives a new adapter ("fuzz").
        var random = adapterName == "fuzz" ? new FirstZero() : new Random(1);
        using var load = FileKinds.All.Single(k => k.Name == kind).Prepare(artifact, random);
        var e = Assert.ThrowsAny<T>(load.Load);
        Assert.True(e is PeftFileException, $"{e.GetType().Name} is not a PeftFileException: {e}");
        Assert.Contains(Path.GetDirectoryName(artifact)!, e.Message, StringComparison.Ordinal);
        Assert.Null(load.Unchanged?.Invoke());
        return e;
    }

    private sealed class FirstZero : Random
    {
        public override int Next(int maxValue) => 0;
    }

    private static void EditJson(string path, Action<JsonObject> edit)
    {
        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(root);
        File.WriteAllText(path, root.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }

    private static void RewriteTensor(string path, string key, Func<Tensor, Tensor> change)
    {
        List<KeyValuePair<string, Tensor>> tensors;
        Dictionary<string, string> metadata;
        using (var reader = SafetensorsFile.Open(path))
        {
            metadata = reader.Metadata.ToDictionary();
            tensors = reader.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, reader.ReadTensor(t.Name))).ToList();
        }
        int index = tensors.FindIndex(p => p.Key == key);
        Assert.True(index >= 0, $"{key} not in {path}");
        tensors[index] = new(key, change(tensors[index].Value));
        SafetensorsFile.Write(path, tensors, metadata.Count > 0 ? metadata : null);
    }

    private static void UpdateManifestHashes(string checkpoint)
    {
        var manifest = Path.Combine(checkpoint, CheckpointStore.ManifestFileName);
        EditJson(manifest, root =>
        {
            foreach (var (name, entry) in root["files"]!.AsObject().ToList())
            {
                var bytes = File.ReadAllBytes(Path.Combine(checkpoint, name));
                entry!["Bytes"] = bytes.LongLength;
                entry["Sha256"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
            }
        });
    }

    private static Tensor FromBytes(byte[] bytes) => torch.tensor(bytes, dtype: ScalarType.Byte);

    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static Tensor Patch(Tensor state, int offset, byte[] value)
    {
        var bytes = state.bytes.ToArray();
        value.CopyTo(bytes, offset);
        return FromBytes(bytes);
    }

    private static byte[] Replace(byte[] haystack, byte[] needle, byte[] replacement)
    {
        int at = haystack.AsSpan().IndexOf(needle);
        Assert.True(at >= 0);
        return [.. haystack[..at], .. replacement, .. haystack[(at + needle.Length)..]];
    }

    private static void Replace(string path, string what)
    {
        File.Delete(path);
        switch (what)
        {
            case "directory":
                Directory.CreateDirectory(path);
                break;
            case "loop":
                File.CreateSymbolicLink(path, path + ".loop");
                File.CreateSymbolicLink(path + ".loop", path);
                break;
            default:
                Assert.Equal(0, MkFifo(path, Convert.ToInt32("600", 8)));
                break;
        }
    }

#pragma warning disable SYSLIB1054
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int MkFifo(string path, int mode);
#pragma warning restore SYSLIB1054
}
