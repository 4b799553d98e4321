using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Bottleneck;

/// <summary>
/// Compacter and Compacter++ on a user's stack: placement, one shared rule counted and trained once, near-identity at init,
/// files (the BOTTLENECK format with the PHM fields and the rule once), moves, and refusals naming the field or insertion point.
/// </summary>
public sealed class CompacterTests
{
    // Width 8, reduction factor 2: bottleneck 4; phm_dim 2 divides 8 and 4.
    private static readonly BottleneckConfig s_compacter = BottleneckConfig.Compacter() with { ReductionFactor = 2, PhmDim = 2 };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CompacterSharesOneRuleAcrossEveryAdapterAndTrainsItOnce(bool plusPlus)
    {
        var config = plusPlus ? s_compacter with { MhAdapter = false } : s_compacter;
        if (plusPlus) Assert.Equal(BottleneckConfig.CompacterPlusPlus() with { ReductionFactor = 2, PhmDim = 2 }, config);
        using var reference = new UserStack(3, width: 8);
        using var model = new UserStack(3, width: 8);
        var inserted = model.AddBottleneckAdapters(config);
        Assert.Equal(plusPlus ? 3 : 6, inserted.Count);
        Assert.All(inserted, a => Assert.Contains(plusPlus ? ".output_adapters." : "_adapters.", a.Path, StringComparison.Ordinal));
        var rule = inserted[0].Adapter.PhmDown.Rule;
        Assert.All(inserted, a => Assert.Same(rule, a.Adapter.PhmDown.Rule));
        Assert.All(inserted, a => Assert.Same(rule, a.Adapter.PhmUp.Rule));
        Assert.Equal(new long[] { 2, 2, 2 }, rule.shape);

        // Trainable: each adapter's W_left, W_right, b (k(in + r) + r + k(r + out) + out = 12 + 4 + 12 + 8 = 36) and the rule once (8).
        Assert.Equal(36, config.CountParameters(8, 8));
        var summary = model.GetTrainableSummary();
        Assert.Equal((inserted.Count * 36) + 8, summary.TrainableParameters);
        var shared = Assert.Single(model.SharedParameters());
        Assert.Equal("base_model.phm_rule.default", shared.Name);
        Assert.Same(rule, shared.Parameter);

        // Not the identity at init (the PHM layers' own init), but close: the rule is N(0, 1e-4²).
        using var ids = UserStack.Ids();
        using var y0 = reference.call(ids);
        using var y1 = model.call(ids);
        double diff = (y0 - y1).abs().max().item<float>();
        Assert.True(diff > 0 && diff < 1e-2, $"init difference {diff}");

        using (var loss = y1.pow(2).sum()) loss.backward();
        Assert.True(shared.Parameter.grad!.abs().sum().item<float>() > 0, "the shared rule got no gradient");
        Assert.All(inserted, a => Assert.True(a.Adapter.PhmUp.WeightRight.grad!.abs().sum().item<float>() > 0, $"{a.Path}: no gradient"));
        var adapterParams = inserted.SelectMany(a => a.Adapter.parameters()).ToHashSet(ReferenceEqualityComparer.Instance);
        Assert.All(model.named_parameters().Where(p => !adapterParams.Contains(p.parameter)), p => Assert.Null(p.parameter.grad));
    }

    [Fact]
    public void SaveAndLoadKeepTheRuleOnceAndRestoreTheOutputs()
    {
        string dir = Path.Combine(Path.GetTempPath(), "peft-compacter-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var model = new UserStack(4, width: 8);
            var inserted = model.AddBottleneckAdapters(s_compacter, "task");
            using (no_grad()) inserted[0].Adapter.PhmDown.Rule.add_(0.5f);   // a trained rule, not the init
            model.SaveBottleneckAdapters(dir, "task");
            using (var reader = SafetensorsFile.Open(Path.Combine(dir, BottleneckAdapters.WeightsFileName)))
            {
                var names = reader.Tensors.Select(t => t.Name).ToList();
                Assert.Contains("shared_parameters.task.phm_rule", names);
                Assert.Contains("blocks.0.attention_adapters.adapters.task.adapter_down.0.W_left", names);
                Assert.Contains("blocks.2.output_adapters.adapters.task.adapter_up.b", names);
                Assert.Equal((6 * 6) + 1, names.Count);
            }

            string json = File.ReadAllText(Path.Combine(dir, BottleneckAdapters.ConfigFileName));
            Assert.Contains("\"phm_layer\": true", json, StringComparison.Ordinal);
            Assert.Contains("\"phm_dim\": 2", json, StringComparison.Ordinal);

            using var loaded = new UserStack(4, width: 8);
            Assert.Equal("task", loaded.LoadBottleneckAdapters(dir));
            using var ids = UserStack.Ids();
            using var y0 = model.call(ids);
            using var y1 = loaded.call(ids);
            Assert.True(y0.eq(y1).all().item<bool>());
            Assert.Single(loaded.SharedParameters());

            // An option this library fixes, set otherwise in the file: refused naming the field.
            string configPath = Path.Combine(dir, BottleneckAdapters.ConfigFileName);
            File.WriteAllText(configPath, json.Replace("\"shared_phm_rule\": true", "\"shared_phm_rule\": false", StringComparison.Ordinal));
            var bad = Assert.Throws<AdapterFormatException>(() => new UserStack(4, width: 8).LoadBottleneckAdapters(dir));
            Assert.Contains("shared_phm_rule", bad.Message, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AMoveKeepsOneRuleForAllTheAdapters()
    {
        using var model = new UserStack(6, width: 8);
        var inserted = model.AddBottleneckAdapters(s_compacter);
        model.to(ScalarType.Float64);
        var rule = inserted[0].Adapter.PhmDown.Rule;
        Assert.Equal(ScalarType.Float64, rule.dtype);
        Assert.All(inserted, a => Assert.Same(rule, a.Adapter.PhmUp.Rule));
        Assert.Same(rule, Assert.Single(model.SharedParameters()).Parameter);
        using var ids = UserStack.Ids();
        using var y = model.call(ids);
        Assert.Equal(ScalarType.Float64, y.dtype);
    }

    [Fact]
    public void BadCompacterArgumentsNameTheFieldAndTheFix()
    {
        var divide = Assert.Throws<PeftConfigurationException>(() => new UserStack(5, width: 6).AddBottleneckAdapters(s_compacter with { PhmDim = 4, ReductionFactor = 1.5 }));
        Assert.Contains("phm_dim = 4", divide.Message, StringComparison.Ordinal);
        Assert.Contains("blocks.0.attention_adapters", divide.Message, StringComparison.Ordinal);
        var bottleneck = Assert.Throws<PeftConfigurationException>(() => new UserStack(5, width: 8).AddBottleneckAdapters(s_compacter with { PhmDim = 4, ReductionFactor = 4 }));
        Assert.Contains("bottleneck (floor(8 / 4)) 2", bottleneck.Message, StringComparison.Ordinal);
        var init = Assert.Throws<PeftConfigurationException>(() => new UserStack(5, width: 8).AddBottleneckAdapters(s_compacter with { InitWeights = BottleneckConfig.MamAdapterInit }));
        Assert.Contains("init_weights = 'mam_adapter' with phm_layer", init.Message, StringComparison.Ordinal);
#pragma warning disable PEFT0035 // the run-time checks behind the analyzer's
        var dim = Assert.Throws<PeftConfigurationException>(() => new UserStack(5, width: 8).AddBottleneckAdapters(s_compacter with { PhmDim = 0 }));
        Assert.Contains("phm_dim = 0", dim.Message, StringComparison.Ordinal);
        var rank = Assert.Throws<PeftConfigurationException>(() => new UserStack(5, width: 8).AddBottleneckAdapters(s_compacter with { PhmRank = 0 }));
#pragma warning restore PEFT0035
        Assert.Contains("phm_rank = 0", rank.Message, StringComparison.Ordinal);
    }
}
