using System.Text.Json.Nodes;
using Peft.Checkpoints;
using Peft.Models.Gpt2;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

/// <summary>
/// <c>peft merge</c> with a Hugging Face model directory as <c>--base</c>: the output is a directory of the same layout
/// (same shards with an index, config.json and the other files copied, other weight formats left out), written
/// atomically, equal to the model's own merge.
/// </summary>
public sealed class DirectoryMergeTests : IDisposable
{
    private const string Config = """{"architectures": ["MergeNet"], "model_type": "mergenet", "hidden_size": 32}""";

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// MergeNet saved as a model directory (4 shards at a 2,100-byte limit: fc1.weight and fc1.bias in different shards),
    /// its adapters, and the files a Hugging Face directory has besides the weights.
    /// </summary>
    private MergeNet SaveModelDirectory(string directory, long maxShardBytes = 2_100, int seed = 3)
    {
        Seeding.SetSeed(seed);
        var model = new MergeNet();
        model.RandomizeAdapters(seed + 100);
        HfCheckpoint.Save(model, directory, HfConfig.Parse(Config), new CheckpointSaveOptions { MaxShardSizeBytes = maxShardBytes });
        AdapterFiles.Save(model, _dir["adapters/default"]);
        AdapterFiles.Save(model, _dir["adapters/kron"], "kron");
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), """{"version": "1.0"}""");
        File.WriteAllText(Path.Combine(directory, "generation_config.json"), """{"max_length": 20}""");
        File.WriteAllText(Path.Combine(directory, ".gitattributes"), "*.safetensors filter=lfs\n");
        File.WriteAllBytes(Path.Combine(directory, "pytorch_model.bin"), [1, 2, 3]);
        Directory.CreateDirectory(Path.Combine(directory, "original"));
        File.WriteAllBytes(Path.Combine(directory, "original", "consolidated.00.pth"), [4, 5, 6]);
        return model;
    }

    private static Dictionary<string, Tensor> ReadAll(string path)
    {
        using var reader = SafetensorsFile.Open(path);
        return reader.Tensors.ToDictionary(t => t.Name, t => reader.ReadTensor(t.Name));
    }

    private static Dictionary<string, Tensor> ReadDirectory(string directory)
    {
        using var checkpoint = HfCheckpoint.Open(directory);
        return checkpoint.TensorNames.ToDictionary(n => n, checkpoint.ReadTensor);
    }

    [Theory]
    [InlineData(AdapterNames.Default)]
    [InlineData("kron")]
    public void Sharded_directory_merges_into_a_directory_of_the_same_layout(string adapter)
    {
        string baseDir = _dir["base"], output = _dir["out/merged"];
        using var model = SaveModelDirectory(baseDir);
        var baseShards = Directory.GetFiles(baseDir, "model-*.safetensors").Select(Path.GetFileName).Order().ToList();
        Assert.Equal(4, baseShards.Count);

        var result = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["adapters"], "--adapter-name", adapter, "--output", output);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("merged fc1.weight F32 [32, 16]", result.Output);
        Assert.Contains("merged fc2.weight F32 [24, 32]", result.Output);
        Assert.Contains("copied config.json", result.Output);
        Assert.Contains("copied tokenizer.json", result.Output);
        Assert.Contains("skipped pytorch_model.bin (weights or an index that were not merged)", result.Output);
        Assert.Contains("skipped original/ (a subdirectory)", result.Output);
        Assert.Contains($"wrote {output} (2 module(s) merged", result.Output);

        // The same layout: the same shard files, each holding the same tensors in the same order, the index, the other
        // files byte for byte; no unmerged weights, no staging directory left beside it.
        Assert.Equal(
            new[] { ".gitattributes", "config.json", "generation_config.json", HfCheckpoint.IndexFileName, "tokenizer.json" }.Concat(baseShards).Order(),
            Directory.GetFileSystemEntries(output).Select(Path.GetFileName).Order());
        foreach (var shard in baseShards)
        {
            using var before = SafetensorsFile.Open(Path.Combine(baseDir, shard!));
            using var after = SafetensorsFile.Open(Path.Combine(output, shard!));
            Assert.Equal(before.Tensors.Select(t => (t.Name, t.DType, t.ByteLength)), after.Tensors.Select(t => (t.Name, t.DType, t.ByteLength)));
            long sizeBefore = new FileInfo(before.Path).Length, sizeAfter = new FileInfo(after.Path).Length;
            Assert.True(Math.Abs(sizeAfter - sizeBefore) < 1024, $"{shard}: {sizeBefore} -> {sizeAfter} bytes");
            Assert.Equal(before.Metadata["format"], after.Metadata["format"]);
        }
        foreach (var file in new[] { "config.json", "tokenizer.json", "generation_config.json", ".gitattributes" })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(baseDir, file)), File.ReadAllBytes(Path.Combine(output, file)));
        }
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(output, HfCheckpoint.IndexFileName)))!;
        var baseIndex = JsonNode.Parse(File.ReadAllText(Path.Combine(baseDir, HfCheckpoint.IndexFileName)))!;
        Assert.True(JsonNode.DeepEquals(baseIndex["weight_map"], index["weight_map"]));
        Assert.Equal((long)baseIndex["metadata"]!["total_size"]!, (long)index["metadata"]!["total_size"]!);
        Assert.DoesNotContain(Directory.GetDirectories(_dir["out"]), d => Path.GetFileName(d).StartsWith('.'));

        // The values are the model's own merge, and a fresh model loaded from the directory computes the adapted outputs.
        using var x = randn(5, MergeNet.In);
        model.eval();
        model.SetActiveAdapter(adapter);
        using var adapted = model.call(x);
        model.Merge(adapter);
        ModelWeights.Save(model, _dir["expected.safetensors"]);
        model.Unmerge();
        var expected = ReadAll(_dir["expected.safetensors"]);
        var merged = ReadDirectory(output);
        Assert.Equal(expected.Keys.Order(), merged.Keys.Order());
        foreach (var (name, value) in expected)
        {
            double diff = (value - merged[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6, $"{name}: max |diff| {diff}");
        }

        Seeding.SetSeed(99);
        using var fresh = new MergeNet();
        HfCheckpoint.Load(fresh, output);
        fresh.eval();
        using (fresh.DisableAdapters())
        using (no_grad())
        {
            using var y = fresh.call(x);
            double diff = (y - adapted).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"outputs differ by {diff}");
        }
    }

    [Fact]
    public void Single_file_directory_gives_a_single_file_directory()
    {
        string baseDir = _dir["base"], output = _dir["merged"];
        using var model = SaveModelDirectory(baseDir, maxShardBytes: 5_000_000_000);
        Assert.True(File.Exists(Path.Combine(baseDir, HfCheckpoint.WeightsFileName)));
        Directory.CreateDirectory(output);   // an empty directory is fine

        var result = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["adapters/default"], "--output", output);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.True(File.Exists(Path.Combine(output, HfCheckpoint.WeightsFileName)));
        Assert.False(File.Exists(Path.Combine(output, HfCheckpoint.IndexFileName)));
        Assert.Contains($"weights {HfCheckpoint.WeightsFileName})", result.Output);

        model.Merge();
        ModelWeights.Save(model, _dir["expected.safetensors"]);
        var expected = ReadAll(_dir["expected.safetensors"]);
        foreach (var (name, value) in ReadDirectory(output))
        {
            Assert.True((value - expected[name]).abs().max().item<float>() <= 1e-6, name);
        }
    }

    [Fact]
    public void A_failed_merge_leaves_no_output_directory()
    {
        string baseDir = _dir["base"], output = _dir["out/merged"];
        using var model = SaveModelDirectory(baseDir);

        // An adapter for another model: checked before anything is written.
        Seeding.SetSeed(1);
        using (var other = new RsNet()) AdapterFiles.Save(other, _dir["rs"]);
        var mismatch = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["rs"], "--output", output);
        Assert.Equal(ExitCodes.Failure, mismatch.ExitCode);
        Assert.Contains("'proj.weight'", mismatch.Error);
        Assert.Contains(Path.Combine(baseDir, HfCheckpoint.IndexFileName), mismatch.Error);
        Assert.False(Directory.Exists(output));

        // A file that cannot be copied fails the merge after the shards were written: the staging directory goes away.
        File.CreateSymbolicLink(Path.Combine(baseDir, "tokenizer.model"), Path.Combine(baseDir, "does-not-exist"));
        var broken = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["adapters/default"], "--output", output);
        Assert.Equal(ExitCodes.Failure, broken.ExitCode);
        Assert.Contains(Path.Combine(baseDir, "tokenizer.model"), broken.Error);
        Assert.False(Directory.Exists(output));
        Assert.Empty(Directory.GetFileSystemEntries(_dir["out"]));
    }

    [Fact]
    public void Output_must_be_new_or_empty_and_of_the_base_kind()
    {
        string baseDir = _dir["base"];
        using var model = SaveModelDirectory(baseDir);
        Directory.CreateDirectory(_dir["taken"]);
        File.WriteAllText(_dir["taken/keep.txt"], "mine");

        var taken = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["adapters/default"], "--output", _dir["taken"]);
        Assert.Equal(ExitCodes.UsageError, taken.ExitCode);
        Assert.Contains("not empty", taken.Error);
        Assert.Equal("mine", File.ReadAllText(_dir["taken/keep.txt"]));

        var inPlace = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["adapters/default"], "--output", baseDir);
        Assert.Equal(ExitCodes.UsageError, inPlace.ExitCode);

        File.WriteAllText(_dir["file.safetensors"], "x");
        var toFile = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["adapters/default"], "--output", _dir["file.safetensors"]);
        Assert.Equal(ExitCodes.UsageError, toFile.ExitCode);
        Assert.Contains("--output is a file", toFile.Error);

        ModelWeights.Save(model, _dir["base.safetensors"]);
        var fileToDir = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["taken"]);
        Assert.Equal(ExitCodes.UsageError, fileToDir.ExitCode);
        Assert.Contains("--output is a directory", fileToDir.Error);
    }

    [Fact]
    public void A_damaged_model_directory_fails_naming_the_file()
    {
        string baseDir = _dir["base"];
        using var model = SaveModelDirectory(baseDir);
        File.Delete(Path.Combine(baseDir, "config.json"));
        var noConfig = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["adapters/default"], "--output", _dir["merged"]);
        Assert.Equal(ExitCodes.Failure, noConfig.ExitCode);
        Assert.StartsWith(PeftCli.ErrorPrefix, noConfig.Error);
        Assert.Contains(Path.Combine(baseDir, "config.json"), noConfig.Error);

        File.WriteAllText(Path.Combine(baseDir, "config.json"), Config);
        string shard = Directory.GetFiles(baseDir, "model-00002-*.safetensors").Single();
        File.WriteAllBytes(shard, [1, 2, 3]);
        var corrupt = CliRunner.Run("merge", "--base", baseDir, "--adapter", _dir["adapters/default"], "--output", _dir["merged"]);
        Assert.Equal(ExitCodes.Failure, corrupt.ExitCode);
        Assert.Contains(shard, corrupt.Error);
        Assert.False(Directory.Exists(_dir["merged"]));
    }

    [Fact]
    public void Sharded_Gpt2_directory_merges_its_Conv1D_weights_transposed()
    {
        Seeding.SetSeed(5);
        var config = new Gpt2Config { VocabSize = 40, NEmbd = 32, NLayer = 2, NHead = 4, NPositions = 16, ResidPdrop = 0, EmbdPdrop = 0, AttnPdrop = 0 };
        using var model = new Gpt2LMHeadModel(config);
        model.eval();
        if (!model.AdapterNames().Contains(AdapterNames.Default))
        {
            model.ApplyTargets(new PeftTargets(TargetModules.Names("c_attn"), new LoRAOptions(Rank: 8, Alpha: 16)));
        }
        using (no_grad())
        {
            foreach (var (name, parameter) in model.named_parameters())
            {
                if (name.Contains("lora_B", StringComparison.Ordinal)) parameter.copy_(randn_like(parameter) * 0.2);
            }
        }

        string baseDir = _dir["gpt2"], adapterDir = _dir["gpt2-adapter"], output = _dir["gpt2-merged"];
        model.SavePretrained(baseDir, Gpt2LMHeadModel.SaveOptions(config) with { MaxShardSizeBytes = 20_000 });
        Assert.True(File.Exists(Path.Combine(baseDir, HfCheckpoint.IndexFileName)));
        AdapterFiles.Save(model, adapterDir, options: new AdapterSaveOptions { TaskType = "CAUSAL_LM" });
        Assert.True((bool)JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, AdapterFiles.ConfigFileName)))!["fan_in_fan_out"]!);

        var result = CliRunner.Run("merge", "--base", baseDir, "--adapter", adapterDir, "--output", output);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("merged transformer.h.0.attn.c_attn.weight F32 [32, 96]", result.Output);

        using var ids = randint(0, 40, new long[] { 2, 7 });
        using var merged = Gpt2LMHeadModel.FromPretrained(output);
        merged.eval();
        using (no_grad())
        using (merged.AdapterNames().Count > 0 ? merged.DisableAdapters() : null)
        {
            using var expected = model.call(ids);
            double diff = (merged.call(ids) - expected).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"the merged directory gives logits {diff} away from the adapted model");
        }
    }
}
