using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Core;

public class MultiAdapterTests
{
    private static (AdaptedLinear Layer, LoRAAdapter A, KroneckerAdapter K) TwoAdapters()
    {
        torch.manual_seed(51);
        var layer = AdaptedLinear.Wrap(nn.Linear(16, 16), "q_proj")
            .WithLoRA("a", new LoRAOptions(Rank: 4, Alpha: 8))
            .WithKronecker("k", new KroneckerOptions(Rank: 4, Alpha: 4));
        var a = (LoRAAdapter)layer.GetAdapter("a");
        var k = (KroneckerAdapter)layer.GetAdapter("k");
        TensorAssert.Randomize(a.B);
        TensorAssert.Randomize(k.W1!);
        return (layer, a, k);
    }

    private static Tensor Expected(Tensor x, AdaptedLinear layer, params IAdditiveAdapter[] adapters)
    {
        using var noGrad = torch.no_grad();
        var y = F.linear(x, layer.Weight, layer.Bias);
        foreach (var adapter in adapters)
        {
            using var delta = adapter.DeltaWeight();
            using var contribution = x.matmul(delta.t());
            y.add_(contribution);
        }

        return y;
    }

    [Fact]
    public void FirstAdapterIsActiveAndSwitchingChangesTheOutput()
    {
        var (layer, a, k) = TwoAdapters();
        var model = new Root(layer);
        Assert.Equal(new[] { "a" }, layer.ActiveAdapters);
        Assert.Equal(new[] { "a", "k" }, model.AdapterNames());

        using var x = torch.randn(3, 16);
        using (var y = model.call(x))
        using (var expected = Expected(x, layer, a))
        {
            TensorAssert.Close(expected, y, 1e-5);
        }

        model.SetActiveAdapter("k");
        Assert.Equal(new[] { "k" }, layer.ActiveAdapters);
        using (var y = model.call(x))
        using (var expected = Expected(x, layer, k))
        using (var other = Expected(x, layer, a))
        {
            TensorAssert.Close(expected, y, 1e-5);
            TensorAssert.NotClose(other, y, 1e-2);
        }

        model.SetActiveAdapters("a", "k");
        using (var y = model.call(x))
        using (var expected = Expected(x, layer, a, k))
        {
            TensorAssert.Close(expected, y, 1e-5);
        }

        var ex = Assert.Throws<PeftConfigurationException>(() => model.SetActiveAdapter("missing"));
        Assert.Contains("'missing'", ex.Message);
        Assert.Contains("'a', 'k'", ex.Message);
    }

    [Fact]
    public void DisableAdaptersGivesTheBaseOutputAndRestores()
    {
        var (layer, a, _) = TwoAdapters();
        var model = new Root(layer);
        using var x = torch.randn(3, 16);
        using var baseOut = F.linear(x, layer.Weight, layer.Bias);
        using var adapted = model.call(x);
        TensorAssert.NotClose(baseOut, adapted, 1e-2);

        using (model.DisableAdapters())
        {
            Assert.True(layer.AdaptersDisabled);
            using var y = model.call(x);
            TensorAssert.Equal(baseOut, y);
        }

        Assert.False(layer.AdaptersDisabled);
        using var again = model.call(x);
        TensorAssert.Close(adapted, again, 1e-6);
        Assert.True(a.A.requires_grad);
    }

    [Fact]
    public void DisablingAMergedModelUnmergesFirst()
    {
        var (layer, _, _) = TwoAdapters();
        var model = new Root(layer);
        using var original = layer.Weight.detach().clone();
        using var x = torch.randn(3, 16);
        using var baseOut = F.linear(x, layer.Weight, layer.Bias);
        model.Merge();
        Assert.True(layer.IsMerged);

        using (model.DisableAdapters())
        {
            Assert.False(layer.IsMerged);
            TensorAssert.Close(original, layer.Weight, 1e-6);
            using var y = model.call(x);
            TensorAssert.Close(baseOut, y, 1e-5);
        }
    }

    [Fact]
    public void ModelLevelMergeOfANamedAdapterAndUnmergeAll()
    {
        var (layer, a, k) = TwoAdapters();
        var model = new Root(layer);
        model.SetActiveAdapters("a", "k");
        using var x = torch.randn(3, 16);
        using var unmerged = model.call(x);
        using var original = layer.Weight.detach().clone();

        model.Merge("k");
        Assert.True(k.Merged);
        Assert.False(a.Merged);
        using (var y = model.call(x))
        {
            TensorAssert.Close(unmerged, y, 1e-4);
        }

        model.Merge();
        Assert.True(a.Merged);
        Assert.Equal(new[] { "k", "a" }, layer.MergedAdapters);
        using (var y = model.call(x))
        {
            TensorAssert.Close(unmerged, y, 1e-4);
        }

        model.Unmerge();
        Assert.False(layer.IsMerged);
        TensorAssert.Close(original, layer.Weight, 1e-5);
        Assert.Throws<PeftConfigurationException>(() => model.Merge("nope"));
    }

    [Fact]
    public void SwitchingAwayFromAMergedAdapterUnmergesIt()
    {
        var (layer, a, k) = TwoAdapters();
        var model = new Root(layer);
        using var original = layer.Weight.detach().clone();
        model.Merge();
        Assert.True(a.Merged);
        model.SetActiveAdapter("k");
        Assert.False(a.Merged);
        TensorAssert.Close(original, layer.Weight, 1e-6);
        using var x = torch.randn(2, 16);
        using var y = model.call(x);
        using var expected = Expected(x, layer, k);
        TensorAssert.Close(expected, y, 1e-5);
    }

    [Fact]
    public void DeleteAdapterRemovesItAndActivatesARemainingOne()
    {
        var (layer, a, k) = TwoAdapters();
        var model = new Root(layer);
        model.Merge("a");
        using var x = torch.randn(2, 16);

        model.DeleteAdapter("a");
        Assert.Equal(new[] { "k" }, model.AdapterNames());
        Assert.Equal(new[] { "k" }, layer.ActiveAdapters);
        Assert.DoesNotContain(model.state_dict().Keys, key => key.StartsWith("q_proj.a.", StringComparison.Ordinal));
        using (var y = model.call(x))
        using (var expected = Expected(x, layer, k))
        {
            TensorAssert.Close(expected, y, 1e-5);
        }

        var ex = Assert.Throws<PeftConfigurationException>(() => model.DeleteAdapter("a"));
        Assert.Contains("No layer has an adapter named 'a'", ex.Message);

        model.DeleteAdapter("k");
        Assert.Empty(layer.ActiveAdapters);
        using var baseOut = F.linear(x, layer.Weight, layer.Bias);
        using var plain = model.call(x);
        TensorAssert.Equal(baseOut, plain);
    }

    [Fact]
    public void AdaptedLayersAndPromptEmbeddingsAreFoundWithPaths()
    {
        var root = new TinyRoot();
        var layers = root.AdaptedLayers().ToList();
        Assert.Equal(new[] { "block.q_proj", "block.v_proj" }, layers.Select(l => l.Path));
        Assert.Same(root.Block.Q, layers[0].Layer);
        Assert.Empty(root.PromptEmbeddings());
        Assert.Equal(0, root.VirtualTokenCount());

        var single = AdaptedLinear.Wrap(nn.Linear(4, 4), "x");
        Assert.Equal(string.Empty, single.AdaptedLayers().Single().Path);
    }

    private sealed class Root : nn.Module<Tensor, Tensor>
    {
        private readonly AdaptedLinear _layer;

        public Root(AdaptedLinear layer)
            : base("Root")
        {
            _layer = layer;
            register_module("q_proj", layer);
            this.ApplyTrainability();
        }

        public override Tensor forward(Tensor x) => _layer.call(x);

        protected override void RegisterComponents()
        {
        }
    }
}
