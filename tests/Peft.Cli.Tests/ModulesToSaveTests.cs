using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>LoRA on fc1 and a [Trainable] classifier head: the adapter file carries the head as PEFT's modules_to_save.</summary>
public sealed partial class HeadNet : Module<Tensor, Tensor>
{
    [LoRA(rank: 4, alpha: 8)]
    private Module<Tensor, Tensor> fc1 = Linear(12, 16);

    [Trainable]
    private Module<Tensor, Tensor> classifier = Linear(16, 3);

    public HeadNet() : base(nameof(HeadNet)) => InitializePeft();

    public Module<Tensor, Tensor> Classifier => classifier;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return classifier.call(functional.relu(fc1.call(x))).MoveToOuterDisposeScope();
    }

    /// <summary>Random adapter values and a moved head: what training would leave.</summary>
    public void Train(long seed)
    {
        using var generator = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var p in this.AdapterParameters().Concat(classifier.parameters()))
        {
            using var values = randn(p.shape, generator: generator) * 0.3;
            p.add_(values);
        }
    }
}

/// <summary><c>peft inspect</c> and <c>peft merge</c> on adapters with modules_to_save.</summary>
public sealed class ModulesToSaveTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Dictionary<string, Tensor> ReadAll(string path)
    {
        using var reader = SafetensorsFile.Open(path);
        return reader.Tensors.ToDictionary(t => t.Name, t => reader.ReadTensor(t.Name));
    }

    /// <summary>Saves the base weights, trains (stand-in), saves the adapter with the head; returns the trained model.</summary>
    private HeadNet Prepare(int seed = 4)
    {
        Seeding.SetSeed(seed);
        var model = new HeadNet();
        ModelWeights.Save(model, _dir["base.safetensors"]);
        model.Train(seed + 50);
        AdapterFiles.Save(model, _dir["adapter"], options: new AdapterSaveOptions { TaskType = "SEQ_CLS" });
        return model;
    }

    [Fact]
    public void Inspect_shows_modules_to_save_and_the_saved_module_tensors()
    {
        using var model = Prepare();
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal(new[] { "classifier" }, json["modules_to_save"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(new[] { "fc1" }, json["modules"]!.AsArray().Select(m => m!["module"]!.GetValue<string>()));
        var saved = json["saved_modules"]!.AsArray().Single()!;
        Assert.Equal("classifier", saved["module"]!.GetValue<string>());
        Assert.Equal(new[] { "bias", "weight" }, saved["tensors"]!.AsArray().Select(t => t!.GetValue<string>()));
        Assert.Equal(3 * 16 + 3, saved["parameters"]!.GetValue<long>());
        // Every trainable element is in the file: LoRA 4·(12+16) plus the head.
        Assert.Equal(4 * (12 + 16) + 3 * 16 + 3, json["trainable_parameters"]!.GetValue<long>());

        var text = CliRunner.Run("inspect", _dir["adapter"]);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("modules_to_save: classifier", text.Output);
        Assert.Contains("classifier  bias, weight  51 parameters", text.Output);
        Assert.Contains("base_model.model.classifier.weight", text.Output);
    }

    [Fact]
    public void Inspect_of_an_adapter_without_modules_to_save_says_none()
    {
        Seeding.SetSeed(1);
        using var model = new MergeNet();
        AdapterFiles.Save(model, _dir["plain"]);
        var text = CliRunner.Run("inspect", _dir["plain"]);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("modules_to_save: (none)", text.Output);
    }

    [Fact]
    public void Merge_adds_the_update_and_replaces_the_saved_module_so_the_plain_forward_matches()
    {
        using var model = Prepare();
        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapter"], "--output", _dir["merged.safetensors"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("merged fc1.weight F32 [16, 12]", result.Output);
        Assert.Contains("replaced classifier.weight F32 [3, 16] from base_model.model.classifier.weight (modules_to_save)", result.Output);
        Assert.Contains("replaced classifier.bias F32 [3] from base_model.model.classifier.bias (modules_to_save)", result.Output);
        Assert.Contains("2 tensor(s) replaced from modules_to_save", result.Output);

        var merged = ReadAll(_dir["merged.safetensors"]);
        var adapter = ReadAll(Path.Combine(_dir["adapter"], AdapterFiles.WeightsFileName));
        Assert.True(merged["classifier.weight"].equal(adapter["base_model.model.classifier.weight"]).all().item<bool>());
        Assert.True(merged["classifier.bias"].equal(adapter["base_model.model.classifier.bias"]).all().item<bool>());

        // A fresh model with the merged weights and its adapters disabled computes what the trained model did.
        using var x = randn(6, 12);
        model.eval();
        using var expected = model.call(x);
        Seeding.SetSeed(77);
        using var fresh = new HeadNet();
        ModelWeights.Load(fresh, _dir["merged.safetensors"]);
        fresh.eval();
        using (fresh.DisableAdapters())
        using (no_grad())
        {
            using var y = fresh.call(x);
            double diff = (y - expected).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"outputs differ by {diff}");
        }
    }

    [Fact]
    public void Merge_fails_naming_a_saved_module_tensor_the_base_lacks_and_writes_nothing()
    {
        using var model = Prepare();
        var tensors = ReadAll(_dir["base.safetensors"]);
        tensors.Remove("classifier.bias");
        SafetensorsFile.Write(_dir["nobias.safetensors"], tensors.ToList());
        var result = CliRunner.Run("merge", "--base", _dir["nobias.safetensors"], "--adapter", _dir["adapter"], "--output", _dir["out.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("'classifier.bias'", result.Error);
        Assert.Contains("modules_to_save", result.Error);
        Assert.False(File.Exists(_dir["out.safetensors"]));
    }

    [Fact]
    public void Merge_fails_when_a_saved_module_shape_differs_from_the_base()
    {
        using var model = Prepare();
        var tensors = ReadAll(_dir["base.safetensors"]);
        tensors["classifier.weight"] = zeros(2, 16);
        tensors["classifier.bias"] = zeros(2);
        SafetensorsFile.Write(_dir["two.safetensors"], tensors.ToList());
        var result = CliRunner.Run("merge", "--base", _dir["two.safetensors"], "--adapter", _dir["adapter"], "--output", _dir["out.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("base_model.model.classifier.", result.Error);
        Assert.Contains("[3", result.Error);
        Assert.False(File.Exists(_dir["out.safetensors"]));
    }

    [Fact]
    public void A_stray_tensor_that_is_neither_adapter_nor_saved_module_is_named()
    {
        using var model = Prepare();
        var tensors = ReadAll(Path.Combine(_dir["adapter"], AdapterFiles.WeightsFileName));
        tensors["base_model.model.pooler.weight"] = zeros(2, 2);
        SafetensorsFile.Write(Path.Combine(_dir["adapter"], AdapterFiles.WeightsFileName), tensors.ToList(), new Dictionary<string, string> { ["format"] = "pt" });
        var result = CliRunner.Run("inspect", _dir["adapter"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("base_model.model.pooler.weight", result.Error);
        Assert.Contains("modules_to_save modules (classifier)", result.Error);
    }
}
