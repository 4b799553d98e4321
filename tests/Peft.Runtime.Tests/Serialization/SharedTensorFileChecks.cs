using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>The file round trip every method with model-level shared tensors (VeRA, RandLoRA) must pass, written once.</summary>
internal static class SharedTensorFileChecks
{
    /// <summary>
    /// Saves a randomized model, edits the file's shared tensors to values the seed would not give (as PEFT saves bfloat16
    /// draws made on a GPU machine), then checks that a load binds the file's values, not regenerated ones, and that a second
    /// adapter created from the config alone computes bitwise the same outputs, with the expected options and one shared set
    /// for all its layers.
    /// </summary>
    /// <param name="dir">A temporary directory.</param>
    /// <param name="create">Creates the attributed test model (three adapted layers).</param>
    /// <param name="sharedA">The first shared tensor's name (e.g. <c>vera_A</c>).</param>
    /// <param name="sharedB">The second shared tensor's name.</param>
    /// <param name="expectedOptions">The options the config must give each created adapter.</param>
    /// <param name="loadedTensors">The tensors the file holds (per-module and shared).</param>
    public static void RoundTripUsesTheFilesSharedTensors(
        SafetensorsTempDirectory dir, Func<Module<Tensor, Tensor>> create, string sharedA, string sharedB, PeftAdapterOptions expectedOptions, int loadedTensors)
    {
        string baseFile = dir.File("base.safetensors"), adapterDir = dir.File("adapter");
        using var x = torch.randn(new long[] { 4, 8 }, generator: new Generator(5));
        using var saved = create();
        saved.eval();
        RandomizeAdapters(saved);
        ModelWeights.Save(saved, baseFile);
        AdapterFiles.Save(saved, adapterDir);

        EditWeights(adapterDir, w =>
        {
            using var noGrad = torch.no_grad();
            w[$"base_model.{sharedA}"].mul_(-1);
            w[$"base_model.{sharedB}"].mul_(0.5);
        });
        using var fileA = Read(adapterDir, $"base_model.{sharedA}");

        using var fresh = create();
        fresh.eval();
        ModelWeights.Load(fresh, baseFile);
        Assert.Equal(loadedTensors, AdapterFiles.Load(fresh, adapterDir).LoadedTensors);
        var bound = ((ISharedTensorAdapter)fresh.AdaptedLayers().First().Layer.GetAdapter("default")).SharedTensors!;
        AssertBitwiseEqual(fileA, bound[sharedA]);

        using var other = create();
        other.eval();
        ModelWeights.Load(other, baseFile);
        AdapterFiles.Load(other, adapterDir, "other");
        other.SetActiveAdapter("other");
        fresh.SetActiveAdapter("default");
        using var expected = Output(fresh, x);
        using (var actual = Output(other, x)) AssertBitwiseEqual(expected, actual);
        var created = other.AdaptedLayers().Select(l => l.Layer.GetAdapter("other")).ToList();
        Assert.All(created, c => Assert.Equal(expectedOptions, c.Config));
        Assert.All(created, c => Assert.Same(((ISharedTensorAdapter)created[0]).SharedTensors, ((ISharedTensorAdapter)c).SharedTensors));
    }
}
