using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Bottleneck;

/// <summary>
/// Bottleneck adapters on a user's own stack whose blocks implement <see cref="ITransformerBlock"/>: the placements against
/// hand-computed values (series and scaled parallel), gradients, identity at init, trainability, files and refusals.
/// </summary>
public sealed class BottleneckTests
{
    [Fact]
    public void SeriesAdapterAddsUpOfActivatedDownToTheSublayerOutput()
    {
        // r = floor(2 / 2) = 1. down: [[1, -1]], b 0.5; up: [[2], [3]], b [0.1, -0.2]; relu.
        using var adapter = Hand(new BottleneckConfig(ReductionFactor: 2, NonLinearity: "relu"), [1, -1], 0.5f, [2, 3], [0.1f, -0.2f]);
        using var input = tensor(new float[] { 100, 100 });   // a series adapter never reads the sub-layer input
        using var h = tensor(new float[] { 3, 1 }, requires_grad: true);
        // z = 3 - 1 + 0.5 = 2.5 (relu passes it); up = [5 + 0.1, 7.5 - 0.2] = [5.1, 7.3]; h + up = [8.1, 8.3].
        using var y = adapter.Apply(input, h);
        AssertClose([8.1f, 8.3f], y);

        using (var loss = y.sum()) loss.backward();
        // dL/dup.W = relu(z) = 2.5 per row; dL/dup.b = 1; dL/dz = 2 + 3 = 5, so dL/ddown.W = 5·h = [15, 5], dL/ddown.b = 5;
        // dL/dh = 1 (the residual) + 5·down.W = [6, -4].
        AssertClose([2.5f, 2.5f], adapter.Up.weight!.grad!.flatten());
        AssertClose([1f, 1f], adapter.Up.bias!.grad!);
        AssertClose([15f, 5f], adapter.Down.weight!.grad!.flatten());
        AssertClose([5f], adapter.Down.bias!.grad!);
        AssertClose([6f, -4f], h.grad!);

        // A negative pre-activation is cut by relu: only the up bias remains. h = [1, 3]: z = -1.5 -> 0 -> [1.1, 2.8].
        using var h2 = tensor(new float[] { 1, 3 });
        using var y2 = adapter.Apply(input, h2);
        AssertClose([1.1f, 2.8f], y2);
    }

    [Fact]
    public void ScaledParallelAdapterReadsTheSublayerInputAndScalesByFour()
    {
        // The catalogue's example: W_up σ(W_down x) = [1, 1] and s = 4 add [4, 4]. down [[1, 0]] on x = [1, 5] gives 1.
        using var adapter = Hand(BottleneckConfig.ScaledParallel(), [1, 0], 0, [1, 1], [0, 0]);
        using var x = tensor(new float[] { 1, 5 });
        using var h = tensor(new float[] { 0.5f, -0.5f });
        using var y = adapter.Apply(x, h);
        AssertClose([4.5f, 3.5f], y);
    }

    [Theory]
    [InlineData("houlsby")]
    [InlineData("pfeiffer")]
    [InlineData("parallel")]
    [InlineData("scaled")]
    public void EachPresetIsTheBaseModelAtInitAndTrainsOnlyItsAdapters(string preset)
    {
        var config = Preset(preset);
        using var reference = new UserStack(3);
        using var model = new UserStack(3);
        var inserted = model.AddBottleneckAdapters(config);
        Assert.Equal((config.MhAdapter ? 3 : 0) + (config.OutputAdapter ? 3 : 0), inserted.Count);
        using var ids = UserStack.Ids();
        using var y0 = reference.call(ids);
        using var y1 = model.call(ids);
        Assert.True(y0.eq(y1).all().item<bool>(), $"{preset}: the zero up projection must leave the model equal to its base");

        var trainable = model.TrainableParameters().ToList();
        var adapterParams = inserted.SelectMany(a => a.Adapter.parameters()).ToHashSet(ReferenceEqualityComparer.Instance);
        Assert.Equal(adapterParams.Count, trainable.Count);
        Assert.All(trainable, p => Assert.Contains(p, adapterParams));
        long expectedCount = inserted.Sum(a => config.CountParameters(config.IsParallel ? UserStack.Width : UserStack.Width, UserStack.Width));
        Assert.Equal(expectedCount, trainable.Sum(p => p.numel()));

        using (var loss = y1.pow(2).sum()) loss.backward();
        Assert.All(inserted, a => Assert.True(a.Adapter.Up.weight!.grad!.abs().sum().item<float>() > 0, $"{a.Path}: no gradient"));
        Assert.All(model.named_parameters().Where(p => !adapterParams.Contains(p.parameter)), p => Assert.Null(p.parameter.grad));
    }

    [Fact]
    public void BertInitIsNotTheIdentity()
    {
        using var reference = new UserStack(3);
        using var model = new UserStack(3);
        model.AddBottleneckAdapters(BottleneckConfig.Pfeiffer() with { ReductionFactor = 2, InitWeights = BottleneckConfig.BertInit });
        using var ids = UserStack.Ids();
        using var y0 = reference.call(ids);
        using var y1 = model.call(ids);
        Assert.False(y0.eq(y1).all().item<bool>());
    }

    [Fact]
    public void SaveAndLoadRestoreTheSameOutputsWithTheAdaptersLibrarysKeys()
    {
        string dir = Path.Combine(Path.GetTempPath(), "peft-bn-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var model = new UserStack(4);
            var config = BottleneckConfig.Houlsby() with { ReductionFactor = 2, InitWeights = BottleneckConfig.BertInit };
            model.AddBottleneckAdapters(config, "task");
            model.SaveBottleneckAdapters(dir, "task");
            using (var reader = SafetensorsFile.Open(Path.Combine(dir, BottleneckAdapters.WeightsFileName)))
            {
                Assert.Contains("blocks.0.attention_adapters.adapters.task.adapter_down.0.weight", reader.Tensors.Select(t => t.Name));
                Assert.Contains("blocks.2.output_adapters.adapters.task.adapter_up.bias", reader.Tensors.Select(t => t.Name));
                Assert.Equal(24, reader.Tensors.Count);
            }

            using var loaded = new UserStack(4);
            Assert.Equal("task", loaded.LoadBottleneckAdapters(dir));
            using var ids = UserStack.Ids();
            using var y0 = model.call(ids);
            using var y1 = loaded.call(ids);
            Assert.True(y0.eq(y1).all().item<bool>());

            // A model of another width: every key is listed as misshapen, and nothing is inserted.
            using var other = new UserStack(4, width: 8);
            var ex = Assert.Throws<TensorMismatchException>(() => other.LoadBottleneckAdapters(dir));
            Assert.Equal(24, ex.ShapeMismatches.Count);
            Assert.Empty(other.InsertedAdapters());

            // A configuration this library does not insert is refused by field.
            string configPath = Path.Combine(dir, BottleneckAdapters.ConfigFileName);
            File.WriteAllText(configPath, File.ReadAllText(configPath).Replace("\"ln_before\": false", "\"ln_before\": true", StringComparison.Ordinal));
            var bad = Assert.Throws<AdapterFormatException>(() => new UserStack(4).LoadBottleneckAdapters(dir));
            Assert.Contains("ln_before", bad.Message, StringComparison.Ordinal);

            // A missing or mistyped field is named in the message, with what it must be.
            string valid = File.ReadAllText(configPath).Replace("\"ln_before\": true", "\"ln_before\": false", StringComparison.Ordinal);
            File.WriteAllText(configPath, valid.Replace("\"scaling\"", "\"scaling_typo\"", StringComparison.Ordinal));
            bad = Assert.Throws<AdapterFormatException>(() => new UserStack(4).LoadBottleneckAdapters(dir));
            Assert.Contains("\"scaling\" is missing; it must be a finite number", bad.Message, StringComparison.Ordinal);
            File.WriteAllText(configPath, valid.Replace("\"mh_adapter\": true", "\"mh_adapter\": \"yes\"", StringComparison.Ordinal));
            bad = Assert.Throws<AdapterFormatException>(() => new UserStack(4).LoadBottleneckAdapters(dir));
            Assert.Contains("\"mh_adapter\" must be true or false", bad.Message, StringComparison.Ordinal);
            Assert.Equal("mh_adapter", bad.Field);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void MergeIsRefusedNamingTheAdapterAndBadConfigurationsNameTheField()
    {
        using var model = new UserStack(5);
        model.AddBottleneckAdapters(BottleneckConfig.Pfeiffer() with { ReductionFactor = 2 });
        var ex = Assert.Throws<PeftConfigurationException>(() => model.Merge());
        Assert.Contains("cannot be merged", ex.Message, StringComparison.Ordinal);
        Assert.Contains("blocks.0.output_adapters.adapters.default", ex.Message, StringComparison.Ordinal);

        var tooWide = Assert.Throws<PeftConfigurationException>(() => new UserStack(5).AddBottleneckAdapters(BottleneckConfig.Pfeiffer()));
        Assert.Contains("reduction_factor = 16", tooWide.Message, StringComparison.Ordinal);
        Assert.Contains("at most 4", tooWide.Message, StringComparison.Ordinal);
#pragma warning disable PEFT0036 // the run-time check behind the analyzer's
        var activation = Assert.Throws<PeftConfigurationException>(() => new UserStack(5).AddBottleneckAdapters(new BottleneckConfig(NonLinearity: "softsign")));
#pragma warning restore PEFT0036
        Assert.Contains("non_linearity", activation.Message, StringComparison.Ordinal);
        var duplicate = Assert.Throws<PeftConfigurationException>(() => model.AddBottleneckAdapters(BottleneckConfig.Pfeiffer() with { ReductionFactor = 2 }));
        Assert.Contains("already has", duplicate.Message, StringComparison.Ordinal);
    }

    internal static BottleneckConfig Preset(string preset) => preset switch
    {
        "houlsby" => BottleneckConfig.Houlsby() with { ReductionFactor = 2 },
        "pfeiffer" => BottleneckConfig.Pfeiffer() with { ReductionFactor = 2 },
        "parallel" => BottleneckConfig.Parallel() with { ReductionFactor = 2 },
        _ => BottleneckConfig.ScaledParallel(),
    };

    private static BottleneckAdapter Hand(BottleneckConfig config, float[] down, float downBias, float[] up, float[] upBias)
    {
        var adapter = new BottleneckAdapter("hand", config, 2, 2, "test");
        using (no_grad())
        {
            adapter.Down.weight!.copy_(tensor(down).view(1, 2));
            adapter.Down.bias!.fill_(downBias);
            adapter.Up.weight!.copy_(tensor(up).view(2, 1));
            adapter.Up.bias!.copy_(tensor(upBias));
        }

        return adapter;
    }

    private static void AssertClose(float[] expected, Tensor actual)
    {
        var values = actual.detach().to_type(ScalarType.Float32).data<float>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - values[i]) < 1e-5f, $"[{i}]: expected {expected[i]}, got {values[i]}");
    }
}
