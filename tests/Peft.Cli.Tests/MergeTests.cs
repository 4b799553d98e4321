using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

public sealed class MergeTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Builds MergeNet with random adapters and saves base.safetensors, lora/ and kron/.</summary>
    private MergeNet SaveModel(int seed = 3)
    {
        Seeding.SetSeed(seed);
        var model = new MergeNet();
        model.RandomizeAdapters(seed + 100);
        ModelWeights.Save(model, _dir["base.safetensors"]);
        AdapterFiles.Save(model, _dir["adapters/default"], AdapterNames.Default);
        AdapterFiles.Save(model, _dir["adapters/kron"], "kron");
        return model;
    }

    private static Dictionary<string, Tensor> ReadAll(string path)
    {
        using var reader = SafetensorsFile.Open(path);
        return reader.Tensors.ToDictionary(t => t.Name, t => reader.ReadTensor(t.Name));
    }

    [Theory]
    [InlineData(AdapterNames.Default)]
    [InlineData("kron")]
    public void Merged_file_equals_AdaptedLinear_Merge_and_gives_the_same_outputs(string adapter)
    {
        using var model = SaveModel();
        var config = AdapterConfig.Read(Path.Combine(_dir["adapters/" + adapter], AdapterFiles.ConfigFileName));
        Assert.NotEmpty(config.RankPattern); // the two layers' ranks differ, so the per-module rank is exercised

        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapters"], "--adapter-name", adapter, "--output", _dir["out/merged.safetensors"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("merged fc1.weight F32 [32, 16]", result.Output);
        Assert.Contains("merged fc2.weight F32 [24, 32]", result.Output);

        using var x = randn(5, MergeNet.In);
        model.eval();
        model.SetActiveAdapter(adapter);
        using var adapted = model.call(x);
        model.Merge(adapter);
        ModelWeights.Save(model, _dir["expected.safetensors"]);
        model.Unmerge();

        var expected = ReadAll(_dir["expected.safetensors"]);
        var merged = ReadAll(_dir["out/merged.safetensors"]);
        var original = ReadAll(_dir["base.safetensors"]);
        Assert.Equal(expected.Keys.Order(), merged.Keys.Order());
        foreach (var (name, value) in expected)
        {
            Assert.Equal(value.shape, merged[name].shape);
            Assert.Equal(value.dtype, merged[name].dtype);
            double diff = (value - merged[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6, $"{name}: max |diff| {diff}");
        }

        // The update is not trivially zero: the adapted weights moved, the head did not.
        Assert.True((merged["fc1.weight"] - original["fc1.weight"]).abs().max().item<float>() > 1e-2);
        Assert.Equal(0f, (merged["head.weight"] - original["head.weight"]).abs().max().item<float>());

        // A fresh model with the merged weights and its adapters disabled computes what the adapted model did.
        Seeding.SetSeed(99);
        using var fresh = new MergeNet();
        ModelWeights.Load(fresh, _dir["out/merged.safetensors"]);
        fresh.eval();
        using (fresh.DisableAdapters())
        using (no_grad())
        {
            using var y = fresh.call(x);
            double diff = (y - adapted).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"outputs differ by {diff}");
        }

        using var reader = SafetensorsFile.Open(_dir["out/merged.safetensors"]);
        Assert.Equal("pt", reader.Metadata["format"]);
    }

    [Fact]
    public void RsLoRA_scaling_is_alpha_over_sqrt_r()
    {
        Seeding.SetSeed(5);
        using var model = new RsNet();
        using (no_grad())
        {
            foreach (var p in model.AdapterParameters()) p.normal_();
        }

        ModelWeights.Save(model, _dir["base.safetensors"]);
        AdapterFiles.Save(model, _dir["rs"]);
        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["rs"], "--output", _dir["merged.safetensors"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Matches(@"merged proj.weight F32 \[10, 12\] r 4 alpha 6 scaling 3\s", result.Output); // 6 / sqrt(4)

        model.Merge();
        ModelWeights.Save(model, _dir["expected.safetensors"]);
        var diff = (ReadAll(_dir["expected.safetensors"])["proj.weight"] - ReadAll(_dir["merged.safetensors"])["proj.weight"]).abs().max().item<float>();
        Assert.True(diff <= 1e-6, $"max |diff| {diff}");
    }

    [Theory]
    [InlineData(ScalarType.BFloat16, 2e-2)]
    [InlineData(ScalarType.Float16, 4e-3)]
    [InlineData(ScalarType.Float64, 1e-6)]
    public void Base_dtypes_are_kept(ScalarType dtype, double tolerance)
    {
        using var model = SaveModel();
        var base32 = ReadAll(_dir["base.safetensors"]);
        SafetensorsFile.Write(_dir["base-low.safetensors"], base32.Select(p => new KeyValuePair<string, Tensor>(p.Key, p.Value.to(dtype))));

        var result = CliRunner.Run("merge", "--base", _dir["base-low.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["merged.safetensors"]);
        Assert.True(result.ExitCode == 0, result.ToString());

        model.Merge();
        ModelWeights.Save(model, _dir["expected.safetensors"]);
        var expected = ReadAll(_dir["expected.safetensors"]);
        foreach (var (name, value) in ReadAll(_dir["merged.safetensors"]))
        {
            Assert.Equal(dtype, value.dtype);
            double diff = (value.to(ScalarType.Float64) - expected[name].to(ScalarType.Float64)).abs().max().item<double>();
            double scale = Math.Max(1, expected[name].abs().max().item<float>());
            Assert.True(diff <= tolerance * scale, $"{name}: max |diff| {diff}");
        }
    }

    [Fact]
    public void Base_without_the_adapted_weight_fails_naming_the_key_and_writes_nothing()
    {
        using var model = SaveModel();
        var tensors = ReadAll(_dir["base.safetensors"]).Where(p => p.Key != "fc2.weight");
        SafetensorsFile.Write(_dir["partial.safetensors"], tensors);

        var result = CliRunner.Run("merge", "--base", _dir["partial.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["merged.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.StartsWith(PeftCli.ErrorPrefix, result.Error);
        Assert.Contains("'fc2.weight'", result.Error);
        Assert.Contains("partial.safetensors", result.Error);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
        Assert.Empty(Directory.EnumerateFiles(_dir.Path, ".*tmp"));
    }

    [Fact]
    public void Shape_mismatch_fails_naming_the_key()
    {
        using var model = SaveModel();
        var tensors = ReadAll(_dir["base.safetensors"]);
        tensors["fc1.weight"] = zeros(32, 8);
        SafetensorsFile.Write(_dir["other.safetensors"], tensors);

        var result = CliRunner.Run("merge", "--base", _dir["other.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["merged.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("'fc1.weight'", result.Error);
        Assert.Contains("lora_A.weight is [", result.Error); // the adapter's A was made for 16 inputs
        Assert.Contains("[32, 8]", result.Error);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
    }

    [Fact]
    public void Unknown_peft_type_fails()
    {
        using var model = SaveModel();
        string configPath = Path.Combine(_dir["adapters/default"], AdapterFiles.ConfigFileName);
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["peft_type"] = "BOFT";
        File.WriteAllText(configPath, config.ToJsonString());

        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["merged.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("peft_type \"BOFT\" is not supported", result.Error);
        Assert.Contains(configPath, result.Error);
    }

    [Fact]
    public void Corrupt_base_fails_with_the_file_named()
    {
        using var model = SaveModel();
        File.WriteAllBytes(_dir["corrupt.safetensors"], new byte[] { 1, 2, 3 });
        var result = CliRunner.Run("merge", "--base", _dir["corrupt.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["merged.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("Invalid safetensors file", result.Error);
        Assert.Contains("corrupt.safetensors", result.Error);
    }

    [Fact]
    public void Usage_errors_exit_with_2()
    {
        using var model = SaveModel();
        var missingBase = CliRunner.Run("merge", "--base", _dir["nope.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["m.safetensors"]);
        Assert.Equal(ExitCodes.UsageError, missingBase.ExitCode);
        Assert.Contains("nope.safetensors: the base weights file or model directory does not exist", missingBase.Error);

        var missingOption = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--output", _dir["m.safetensors"]);
        Assert.Equal(ExitCodes.UsageError, missingOption.ExitCode);
        Assert.Contains("--adapter", missingOption.Error);

        var unknownName = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapters"], "--adapter-name", "other", "--output", _dir["m.safetensors"]);
        Assert.Equal(ExitCodes.UsageError, unknownName.ExitCode);
        Assert.Contains("no adapter named 'other'", unknownName.Error);
        Assert.Contains("default, kron", unknownName.Error);

        var notAnAdapter = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapters"], "--output", _dir["m.safetensors"]);
        Assert.Equal(ExitCodes.UsageError, notAnAdapter.ExitCode);
        Assert.Contains("--adapter-name", notAnAdapter.Error);

        var unknownCommand = CliRunner.Run("frobnicate");
        Assert.Equal(ExitCodes.UsageError, unknownCommand.ExitCode);
        Assert.False(File.Exists(_dir["m.safetensors"]));
    }

    [Fact]
    public void Prompt_tuning_adapters_cannot_be_merged()
    {
        Directory.CreateDirectory(_dir["prompt"]);
        File.WriteAllText(_dir["prompt/adapter_config.json"], """{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 2, "token_dim": 4}""");
        SafetensorsFile.Write(_dir["prompt/adapter_model.safetensors"], new[] { new KeyValuePair<string, Tensor>("prompt_embeddings", zeros(2, 4)) });
        File.WriteAllBytes(_dir["base.safetensors"], Array.Empty<byte>());
        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["prompt"], "--output", _dir["m.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("prompt-learning adapter", result.Error);
    }
}
