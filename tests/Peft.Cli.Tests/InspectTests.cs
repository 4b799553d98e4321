using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

public sealed class InspectTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static JsonObject Json(CliResult result)
    {
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(string.Empty, result.Error);
        return JsonNode.Parse(result.Output)!.AsObject();
    }

    [Fact]
    public void Adapter_directory_shows_method_targets_tensors_and_parameter_count()
    {
        Seeding.SetSeed(1);
        using var model = new MergeNet();
        AdapterFiles.Save(model, _dir["lora"], options: new AdapterSaveOptions { BaseModelNameOrPath = "tiny/merge-net" });

        var json = Json(CliRunner.Run("inspect", _dir["lora"], "--json"));
        Assert.Equal("adapter", json["kind"]!.GetValue<string>());
        Assert.Equal("LORA", json["peft_type"]!.GetValue<string>());
        Assert.Equal("tiny/merge-net", json["base_model"]!.GetValue<string>());
        Assert.Equal(new[] { "fc1", "fc2" }, json["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order());
        var modules = json["modules"]!.AsArray();
        Assert.Equal(2, modules.Count);
        var fc2 = modules.Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(2, fc2["r"]!.GetValue<int>());
        Assert.Equal(1.5, fc2["scaling"]!.GetValue<double>());
        var tensors = json["tensors"]!.AsArray().ToDictionary(t => t!["name"]!.GetValue<string>(), t => t!);
        Assert.Equal(new long[] { 4, 16 }, tensors["base_model.model.fc1.lora_A.weight"]["shape"]!.AsArray().Select(d => d!.GetValue<long>()));
        Assert.Equal(new long[] { 24, 2 }, tensors["base_model.model.fc2.lora_B.weight"]["shape"]!.AsArray().Select(d => d!.GetValue<long>()));
        Assert.All(tensors.Values, t => Assert.Equal("F32", t["dtype"]!.GetValue<string>()));
        // LoRA parameters of the "default" adapter: 4·(16+32) + 2·(32+24).
        Assert.Equal(4 * (16 + 32) + 2 * (32 + 24), json["trainable_parameters"]!.GetValue<long>());

        var text = CliRunner.Run("inspect", _dir["lora"]);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("peft_type: LORA", text.Output);
        Assert.Contains("target_modules: fc1, fc2", text.Output);
        Assert.Contains("base_model.model.fc1.lora_A.weight  F32   [4, 16]", text.Output);
        Assert.Contains("fc2  r 2  alpha 3  scaling 1.5", text.Output);
        Assert.Contains("trainable parameters: 304", text.Output);
    }

    [Fact]
    public void LoKr_adapter_lists_factored_and_full_factors()
    {
        Seeding.SetSeed(1);
        using var model = new MergeNet();
        AdapterFiles.Save(model, _dir["kron"], "kron");
        var json = Json(CliRunner.Run("inspect", _dir["kron"], "--json"));
        Assert.Equal("LOKR", json["peft_type"]!.GetValue<string>());
        var names = json["tensors"]!.AsArray().Select(t => t!["name"]!.GetValue<string>()).ToList();
        Assert.Contains("base_model.model.fc1.lokr_w2_a", names);
        Assert.Contains("base_model.model.fc2.lokr_w2", names);
        long count = json["tensors"]!.AsArray().Sum(t => t!["shape"]!.AsArray().Aggregate(1L, (a, d) => a * d!.GetValue<long>()));
        Assert.Equal(count, json["trainable_parameters"]!.GetValue<long>());
    }

    [Fact]
    public void Checkpoint_directory_shows_step_loss_files_and_parameters()
    {
        Seeding.SetSeed(1);
        using var model = new MergeNet();
        using var trainer = new AdapterTrainer(model.TrainableParameters(), new TrainingOptions { TotalSteps = 10, LearningRate = 1e-2 });
        using var x = randn(8, MergeNet.In);
        double loss = 0;
        for (int i = 0; i < 2; i++) loss = trainer.TrainStep(() => model.call(x).pow(2).mean()).Loss;
        var info = new CheckpointStore(_dir["checkpoints"]).Save(model, trainer, dataPosition: 2, lastLoss: loss);

        var json = Json(CliRunner.Run("inspect", info.Path, "--json"));
        Assert.Equal("checkpoint", json["kind"]!.GetValue<string>());
        Assert.Equal(2, json["step"]!.GetValue<int>());
        Assert.Equal(10, json["total_steps"]!.GetValue<int>());
        Assert.Equal("AdamW", json["optimizer"]!.GetValue<string>());
        Assert.Equal(loss, json["last_loss"]!.GetValue<double>());
        Assert.Equal(new[] { CheckpointStore.OptimizerFileName, CheckpointStore.RandomStateFileName, CheckpointStore.ParametersFileName }.Order(),
            json["files"]!.AsArray().Select(f => f!["name"]!.GetValue<string>()).Order());
        Assert.Equal(trainer.Parameters.Sum(p => p.numel()), json["trainable_parameters"]!.GetValue<long>());
        Assert.Contains("fc1.default.lora_A.weight", json["tensors"]!.AsArray().Select(t => t!["name"]!.GetValue<string>()));

        var text = CliRunner.Run("inspect", info.Path);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("checkpoint: " + info.Path, text.Output);
        Assert.Contains("step: 2", text.Output);

        // A corrupted file is found through the manifest's hash and named.
        File.AppendAllText(Path.Combine(info.Path, CheckpointStore.OptimizerFileName), "x");
        var corrupt = CliRunner.Run("inspect", info.Path);
        Assert.Equal(ExitCodes.Failure, corrupt.ExitCode);
        Assert.Contains(CheckpointStore.OptimizerFileName, corrupt.Error);

        // The run's output directory is not itself inspectable, but the error points at the latest checkpoint.
        var root = CliRunner.Run("inspect", _dir.Path);
        Assert.Equal(ExitCodes.UsageError, root.ExitCode);
        Assert.Contains("latest checkpoint: " + info.Path, root.Error);
    }

    [Fact]
    public void Safetensors_file_shows_tensors_dtypes_shapes_and_metadata()
    {
        SafetensorsFile.Write(_dir["w.safetensors"], new[]
        {
            new KeyValuePair<string, Tensor>("a.weight", zeros(3, 4, dtype: ScalarType.BFloat16)),
            new KeyValuePair<string, Tensor>("ids", zeros(new long[] { 5 }, dtype: ScalarType.Int64)),
            new KeyValuePair<string, Tensor>("scalar", tensor(1.5)),
        }, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "hello" });

        var json = Json(CliRunner.Run("inspect", _dir["w.safetensors"], "--json"));
        Assert.Equal("safetensors", json["kind"]!.GetValue<string>());
        Assert.Equal("hello", json["metadata"]!["note"]!.GetValue<string>());
        var tensors = json["tensors"]!.AsArray();
        Assert.Equal(new[] { "a.weight", "ids", "scalar" }, tensors.Select(t => t!["name"]!.GetValue<string>()));
        Assert.Equal(new[] { "BF16", "I64", "F64" }, tensors.Select(t => t!["dtype"]!.GetValue<string>()));
        Assert.Empty(tensors[2]!["shape"]!.AsArray());
        Assert.Equal(12 + 5 + 1, json["parameters"]!.GetValue<long>());

        var text = CliRunner.Run("inspect", _dir["w.safetensors"]);
        Assert.Contains("a.weight  BF16  [3, 4]", text.Output);
        Assert.Contains("note", text.Output);
    }

    [Fact]
    public void Errors_name_the_path_and_use_the_documented_exit_codes()
    {
        var missing = CliRunner.Run("inspect", _dir["nothing-here"]);
        Assert.Equal(ExitCodes.UsageError, missing.ExitCode);
        Assert.Contains(_dir["nothing-here"] + ": no such file or directory", missing.Error);
        Assert.Equal(string.Empty, missing.Output);

        File.WriteAllBytes(_dir["bad.safetensors"], new byte[] { 8, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'x' });
        var corrupt = CliRunner.Run("inspect", _dir["bad.safetensors"]);
        Assert.Equal(ExitCodes.Failure, corrupt.ExitCode);
        Assert.Contains("Invalid safetensors file '" + _dir["bad.safetensors"] + "'", corrupt.Error);

        Directory.CreateDirectory(_dir["ia3"]);
        File.WriteAllText(_dir["ia3/adapter_config.json"], """{"peft_type": "BOFT", "target_modules": ["k"]}""");
        var unknown = CliRunner.Run("inspect", _dir["ia3"]);
        Assert.Equal(ExitCodes.Failure, unknown.ExitCode);
        Assert.Contains("peft_type \"BOFT\" is not supported", unknown.Error);
        Assert.Contains(_dir["ia3/adapter_config.json"], unknown.Error);

        Directory.CreateDirectory(_dir["noweights"]);
        File.WriteAllText(_dir["noweights/adapter_config.json"], """{"peft_type": "LORA", "target_modules": ["k"]}""");
        var noWeights = CliRunner.Run("inspect", _dir["noweights"]);
        Assert.Equal(ExitCodes.Failure, noWeights.ExitCode);
        Assert.Contains(_dir["noweights/adapter_model.safetensors"], noWeights.Error);

        Directory.CreateDirectory(_dir["empty"]);
        var neither = CliRunner.Run("inspect", _dir["empty"]);
        Assert.Equal(ExitCodes.UsageError, neither.ExitCode);
        Assert.Contains("not an adapter directory", neither.Error);

        var noArgument = CliRunner.Run("inspect");
        Assert.Equal(ExitCodes.UsageError, noArgument.ExitCode);
    }
}
