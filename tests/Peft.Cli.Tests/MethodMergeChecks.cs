using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

/// <summary>
/// The checks every method's <c>peft merge</c> test makes (LoHa, HiRA, VeRA, ...): adapter values moved off their
/// initialisation, base and adapter saved as a user would, and the file-level merge compared with the model's own
/// <c>Merge()</c> tensor by tensor.
/// </summary>
internal static class MethodMergeChecks
{
    /// <summary>Gives every adapter parameter seeded values (<c>0.3 · randn</c>) so a merge is not trivially the base,
    /// then writes <c>base.safetensors</c> and the PEFT adapter directory <c>adapter</c> into <paramref name="dir"/>.</summary>
    public static void RandomizeAndSave(nn.Module model, TempDir dir, long seed)
    {
        using (var generator = new Generator((ulong)seed))
        using (no_grad())
        {
            foreach (var p in model.AdapterParameters())
            {
                using var values = randn(p.shape, generator: generator) * 0.3;
                p.copy_(values);
            }
        }

        ModelWeights.Save(model, dir["base.safetensors"]);
        AdapterFiles.Save(model, dir["adapter"]);
    }

    /// <summary>Stands for training: adds seeded <c>0.3 · randn</c> to every adapter parameter (a trained adapter is its init
    /// plus an update, which is what a conversion or a merge onto a rewritten base must reproduce).</summary>
    public static void SimulateTraining(nn.Module model, long seed)
    {
        using var generator = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var p in model.AdapterParameters())
        {
            using var noise = randn(p.shape, generator: generator) * 0.3;
            p.add_(noise);
        }
    }

    /// <summary>Every tensor of a safetensors file by name.</summary>
    public static Dictionary<string, Tensor> ReadAll(string path)
    {
        using var reader = SafetensorsFile.Open(path);
        return reader.Tensors.ToDictionary(t => t.Name, t => reader.ReadTensor(t.Name));
    }

    /// <summary>
    /// Runs <c>peft merge</c> on <paramref name="dir"/>'s base and adapter (into <c>merged.safetensors</c>), merges
    /// <paramref name="model"/> itself, and asserts both files hold the same tensors within 1e-6 and that the merge
    /// reported <paramref name="mergedWeights"/>.
    /// </summary>
    /// <returns>The merged file's tensors and the base file's, for the method's own checks.</returns>
    public static (Dictionary<string, Tensor> Merged, Dictionary<string, Tensor> Original) AssertFileMergeEqualsModelMerge(
        nn.Module model, TempDir dir, params string[] mergedWeights)
    {
        var result = CliRunner.Run("merge", "--base", dir["base.safetensors"], "--adapter", dir["adapter"], "--output", dir["merged.safetensors"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var line in mergedWeights)
        {
            Assert.Contains(line, result.Output);
        }

        model.eval();
        model.Merge();
        ModelWeights.Save(model, dir["expected.safetensors"]);
        var expected = ReadAll(dir["expected.safetensors"]);
        var merged = ReadAll(dir["merged.safetensors"]);
        Assert.Equal(expected.Keys.Order(), merged.Keys.Order());
        foreach (var (name, value) in expected)
        {
            double diff = (value - merged[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6, $"{name}: max |diff| {diff}");
        }

        return (merged, ReadAll(dir["base.safetensors"]));
    }

    /// <summary>A fresh model loaded from the merged file, adapters disabled, gives <paramref name="adapted"/> for
    /// <paramref name="x"/> within 1e-5.</summary>
    public static void AssertMergedFileGivesTheAdaptedOutputs(nn.Module<Tensor, Tensor> fresh, TempDir dir, Tensor x, Tensor adapted)
    {
        ModelWeights.Load(fresh, dir["merged.safetensors"]);
        fresh.eval();
        using (fresh.DisableAdapters())
        using (no_grad())
        using (var y = fresh.call(x))
        {
            double diff = (y - adapted).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"outputs differ by {diff}");
        }
    }
}
