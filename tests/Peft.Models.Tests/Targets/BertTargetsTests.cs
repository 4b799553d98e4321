using Peft.Models.Tests.Bert;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Targets;

/// <summary>Configuration targeting on the tiny BERT classifier (2 layers): query/key/value/dense and "all-linear".</summary>
[Collection(TinyBert.Collection)]
public sealed class BertTargetsTests
{
    private static IEnumerable<string> PerLayer(params string[] suffixes)
        => new[] { 0, 1 }.SelectMany(i => suffixes.Select(s => $"bert.encoder.layer.{i}.{s}"));

    private static readonly string[] Dense = { "attention.output.dense", "intermediate.dense", "output.dense" };
    private static readonly string[] Attention = { "attention.self.query", "attention.self.key", "attention.self.value" };

    private static PeftTargets Cfg(TargetModules targets) => new(targets, new LoRAOptions(Rank: 4, Alpha: 8)) { AdapterName = "cfg" };

    [Fact]
    public void QueryKeyValueDenseMatchEveryEncoderLinearAndThePooler()
    {
        using var model = TinyBert.Create(1);
        var adapted = model.ApplyTargets(Cfg(TargetModules.Names("query", "key", "value", "dense")));
        var expected = PerLayer(Attention.Concat(Dense).ToArray()).Append("bert.pooler.dense");
        Assert.Equal(expected.OrderBy(n => n), adapted.OrderBy(n => n));
        Assert.All(adapted, path => Assert.True(model.AdaptedLayers().Single(l => l.Path == path).Layer.HasAdapter("cfg"), path));
    }

    [Fact]
    public void AllLinearLeavesOutTheTrainableClassifier()
    {
        using var model = TinyBert.Create(1);
        var selected = model.ResolveTargets(Cfg(TargetModules.AllLinear)).Selected;
        var expected = PerLayer(Attention.Concat(Dense).ToArray()).Append("bert.pooler.dense");
        Assert.Equal(expected.OrderBy(n => n), selected.OrderBy(n => n));
        Assert.DoesNotContain("classifier", selected);

        // Named explicitly, the [Trainable] head can be targeted (PEFT allows it too); a rank above min(32, 2) is refused.
        var tooLarge = Assert.Throws<PeftConfigurationException>(() => model.ResolveTargets(Cfg(TargetModules.Names("classifier"))));
        Assert.Contains("rank 4 exceeds min(in_features=32, out_features=2) = 2", tooLarge.Message);
        Assert.Equal(new[] { "classifier" }, model.ResolveTargets(Cfg(TargetModules.Names("classifier")) with { Options = new LoRAOptions(Rank: 2) }).Selected);
    }

    [Fact]
    public void DotSuffixAndRegexSelectOneKindOfDense()
    {
        using var model = TinyBert.Create(1);
        Assert.Equal(PerLayer("intermediate.dense"), model.ResolveTargets(Cfg(TargetModules.Names("intermediate.dense"))).Selected);
        Assert.Equal(PerLayer("attention.output.dense", "output.dense").OrderBy(n => n),
            model.ResolveTargets(Cfg(TargetModules.Regex(@".*\.output\.dense"))).Selected.OrderBy(n => n));
        var ex = Assert.Throws<PeftConfigurationException>(() => model.ResolveTargets(Cfg(TargetModules.Names("querry"))));
        Assert.Contains("Did you mean 'query'", ex.Message);
        Assert.Contains("Linear modules: query, key, value, dense, classifier", ex.Message);
        var nonLinear = Assert.Throws<PeftConfigurationException>(() => model.ResolveTargets(Cfg(TargetModules.Names("LayerNorm"))));
        Assert.Contains("not a linear layer", nonLinear.Message);
    }

    [Fact]
    public void TargetedForwardStartsAtTheBaseAndMergesExactly()
    {
        using var model = TinyBert.Create(2);
        using var ids = TinyBert.RandomIds(3, 2, 7);
        using var baseOut = model.forward(ids);
        model.ApplyTargets(Cfg(TargetModules.Names("key", "dense")));
        model.SetActiveAdapter("cfg");
        using (var init = model.forward(ids))
        {
            Assert.True(TinyBert.BitwiseEqual(baseOut, init));
        }
        manual_seed(4);
        using (no_grad())
        {
            foreach (var (_, layer) in model.AdaptedLayers().Where(l => l.Layer.HasAdapter("cfg")))
            {
                ((LoRAAdapter)layer.GetAdapter("cfg")).B.normal_(0, 0.05);
            }
        }
        using var adapted = model.forward(ids);
        Assert.False(adapted.allclose(baseOut, rtol: 1e-4, atol: 1e-5));
        model.Merge();
        using (var merged = model.forward(ids))
        {
            Assert.True(merged.allclose(adapted, rtol: 1e-4, atol: 1e-5));
        }
        model.Unmerge();
        using (model.DisableAdapters())
        using (var restored = model.forward(ids))
        {
            Assert.True(restored.allclose(baseOut, rtol: 1e-5, atol: 1e-5));
        }

        // Only the active "cfg" adapters and the [Trainable] classifier train: r·(in+out) per layer plus the head.
        long perLayer = 4 * ((32 + 32) + (32 + 32) + (48 + 32) + (32 + 48));
        long pooler = 4 * (32 + 32);
        long classifier = 32 * 2 + 2;
        Assert.Equal(2 * perLayer + pooler + classifier, model.GetTrainableSummary().TrainableParameters);
    }
}
