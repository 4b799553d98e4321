using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

/// <summary><c>peft merge</c> of an ID³/SPT sparse delta into a base weights file: the same addition as on the model.</summary>
public sealed class SparseDeltaCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static nn.Module<Tensor, Tensor> Model(long inputs = 6)
    {
        torch.manual_seed(31);
        var model = nn.Sequential(("fc1", nn.Linear(inputs, 5)), ("act", nn.Tanh()), ("fc2", nn.Linear(5, 3)));
        foreach (var p in model.parameters())
        {
            p.requires_grad = false;
        }

        return model;
    }

    [Fact]
    public void Merge_adds_the_trained_entries_into_the_base_file_and_keeps_every_other_tensor()
    {
        var model = Model();
        ModelWeights.Save(model, _dir["base.safetensors"]);
        using (var id3 = new Id3Unmasking(model, ["fc1.weight", "fc2.weight"], new Id3Options(Budget: 9, UnmaskingSteps: 3)))
        {
            using var trainer = new AdapterTrainer(id3.Parameters, new TrainingOptions { TotalSteps = 6, LearningRate = 0.05, Callbacks = [id3] });
            var x = randn(8, 6, generator: new Generator(3));
            for (int i = 0; i < 6; i++)
            {
                trainer.TrainStep(() => model.call(x).sin().sum());
            }

            using var delta = id3.Delta();
            delta.Save(_dir["delta.safetensors"]);
        }

        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["delta.safetensors"], "--output", _dir["merged.safetensors"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("merged fc1.weight (sparse delta)", result.Output, StringComparison.Ordinal);
        Assert.Contains("9 entries of 2 tensor(s)", result.Output, StringComparison.Ordinal);

        using var merged = SafetensorsFile.Open(_dir["merged.safetensors"]);
        using var original = SafetensorsFile.Open(_dir["base.safetensors"]);
        foreach (var name in new[] { "fc1.weight", "fc2.weight" })
        {
            using var trained = model.get_parameter(name)!.detach();
            using var file = merged.ReadTensor(name);
            Assert.True(file.allclose(trained, rtol: 0, atol: 1e-6), $"{name} differs from the trained weights");
            using var before = original.ReadTensor(name);
            Assert.False(file.eq(before).all().item<bool>(), $"{name} did not change");
        }

        foreach (var name in new[] { "fc1.bias", "fc2.bias" })
        {
            using var file = merged.ReadTensor(name);
            using var before = original.ReadTensor(name);
            Assert.True(file.eq(before).all().item<bool>(), $"{name} changed");
        }
    }

    [Fact]
    public void A_delta_for_another_base_is_refused_naming_the_tensor()
    {
        var model = Model();
        using (var masks = new Peft.Training.Masks.ParameterMasks(model))
        {
            masks.Add("fc1.weight", ones(5, 6, dtype: ScalarType.Bool));
            using var delta = masks.Delta();
            delta.Save(_dir["delta.safetensors"]);
        }

        ModelWeights.Save(Model(inputs: 4), _dir["other.safetensors"]);
        var result = CliRunner.Run("merge", "--base", _dir["other.safetensors"], "--adapter", _dir["delta.safetensors"], "--output", _dir["merged.safetensors"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("'fc1.weight'", result.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
    }
}
