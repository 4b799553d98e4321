using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Core.Fused;

/// <summary>
/// Sibling projections run as one product (<see cref="SiblingProjectionGroup"/>) against the same layers run separately:
/// outputs and every gradient in float64, merges writing through the shared buffer, the fallbacks, and the linking rules.
/// </summary>
public class SiblingProjectionTests
{
    private const double Tolerance = 1e-10;

    /// <summary>An attention-like module: q (out 6), k and v (out 4) take the same input; o does not.</summary>
    private sealed class Qkv : nn.Module<Tensor, Tensor>, ISiblingProjections
    {
        private static readonly IReadOnlyList<IReadOnlyList<string>> s_groups = [["q", "k", "v"]];

        public Qkv(bool bias, long inV = 12) : base(nameof(Qkv))
        {
            manual_seed(5);
            q = AdaptedLinear.Wrap(nn.Linear(12, 6, hasBias: bias, dtype: ScalarType.Float64), "q");
            k = AdaptedLinear.Wrap(nn.Linear(12, 4, hasBias: bias, dtype: ScalarType.Float64), "k");
            v = AdaptedLinear.Wrap(nn.Linear(inV, 4, hasBias: bias, dtype: ScalarType.Float64), "v");
            RegisterComponents();
            foreach (var p in parameters())
            {
                p.requires_grad = false;
            }
        }

#pragma warning disable SA1401, IDE1006 // fields named as the module's children
        public AdaptedLinear q;
        public AdaptedLinear k;
        public AdaptedLinear v;
#pragma warning restore SA1401, IDE1006

        public IReadOnlyList<IReadOnlyList<string>> SiblingProjections => s_groups;

        public Tensor[] Project(Tensor x) => [q.call(x), k.call(x), v.call(x)];

        public override Tensor forward(Tensor x) => throw new NotSupportedException();
    }

    private static void Adapt(AdaptedLinear layer, PeftAdapterOptions options)
    {
        layer.WithAdapter("default", options);
        using (no_grad())
        {
            foreach (var (_, p) in layer.GetAdapter("default").named_parameters())
            {
                p.add_(randn_like(p)); // off the zero init of B, so every gradient is non-trivial
            }
        }
    }

    private static Qkv LoRAModule(bool bias = true, bool adaptK = true)
    {
        var m = new Qkv(bias);
        Adapt(m.q, new LoRAOptions(Rank: 2, Alpha: 4));
        if (adaptK)
        {
            Adapt(m.k, new LoRAOptions(Rank: 3, Alpha: 3));
        }

        Adapt(m.v, new LoRAOptions(Rank: 2, Alpha: 8, UseRsLora: true));
        return m;
    }

    /// <summary>Runs the three projections on one input and one upstream gradient per output; returns the outputs, the
    /// input's gradient and every trainable parameter's gradient (cleared afterwards).</summary>
    private static (Tensor[] Outputs, Tensor InputGrad, Tensor[] Grads) Run(Qkv m, long[] shape, long seed = 7)
    {
        manual_seed(seed);
        var x = randn(shape, dtype: ScalarType.Float64).requires_grad_(true);
        var ys = m.Project(x);
        var loss = zeros(1, dtype: ScalarType.Float64);
        for (int i = 0; i < ys.Length; i++)
        {
            manual_seed(seed + 1 + i);
            loss = loss + (ys[i] * randn_like(ys[i])).sum();
        }

        loss.backward();
        var trainable = m.parameters().Where(p => p.requires_grad).ToArray();
        var grads = trainable.Select(p => p.grad!.clone()).ToArray();
        foreach (var p in trainable)
        {
            p.grad!.zero_();
        }

        return (ys.Select(y => y.detach().clone()).ToArray(), x.grad!.clone(), grads);
    }

    private static void AssertClose(Tensor expected, Tensor actual, double tolerance = Tolerance)
    {
        Assert.Equal(expected.shape, actual.shape);
        double diff = (expected - actual).abs().max().ToDouble();
        Assert.True(diff <= tolerance, $"max difference {diff:E3} above {tolerance:E1}");
    }

    private static void AssertSameRun((Tensor[] Outputs, Tensor InputGrad, Tensor[] Grads) expected, (Tensor[] Outputs, Tensor InputGrad, Tensor[] Grads) actual, double tolerance = Tolerance)
    {
        for (int i = 0; i < expected.Outputs.Length; i++)
        {
            AssertClose(expected.Outputs[i], actual.Outputs[i], tolerance);
        }

        AssertClose(expected.InputGrad, actual.InputGrad, tolerance);
        Assert.Equal(expected.Grads.Length, actual.Grads.Length);
        for (int i = 0; i < expected.Grads.Length; i++)
        {
            AssertClose(expected.Grads[i], actual.Grads[i], tolerance);
        }
    }

    [Theory]
    [InlineData(true, true, 2)]
    [InlineData(false, true, 3)]
    [InlineData(true, false, 3)]
    public void OneProductEqualsTheSeparateLayers(bool bias, bool adaptK, int rank)
    {
        using var m = LoRAModule(bias, adaptK);
        long[] shape = rank == 2 ? [5, 12] : [2, 5, 12];
        var separate = Run(m, shape);

        var report = m.FuseSiblingProjections();
        var group = Assert.Single(report.Linked);
        Assert.Equal(new[] { "q", "k", "v" }, group.Members);
        Assert.Same(group, m.k.Siblings);
        var fused = Run(m, shape);
        Assert.Equal(1, group.FusedProducts);
        Assert.Null(group.LastFallbackReason);
        AssertSameRun(separate, fused);
        Assert.Equal(adaptK ? 6 : 4, fused.Grads.Length); // A and B of each adapted member

        Assert.Equal(1, m.UnfuseSiblingProjections());
        Assert.Null(m.q.Siblings);
        AssertSameRun(separate, Run(m, shape));
    }

    [Fact]
    public void WeightsBecomeRowsOfOneBufferAndMergesWriteThrough()
    {
        using var m = LoRAModule();
        var before = m.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var reference = Run(m, [4, 12]);
        var group = Assert.Single(m.FuseSiblingProjections().Linked);

        // The base keys, shapes and values are as they were.
        Assert.Equal(before.Keys, m.state_dict().Keys);
        foreach (var (key, value) in m.state_dict())
        {
            Assert.True(before[key].eq(value).all().ToBoolean(), key);
        }

        // Merge adds k's update to its weight in place; the product sees it only if k's weight is a view of the buffer.
        m.k.Merge();
        var merged = Run(m, [4, 12]);
        Assert.Equal(1, group.FusedProducts);
        for (int i = 0; i < 3; i++)
        {
            AssertClose(reference.Outputs[i], merged.Outputs[i], 1e-12);
        }

        m.k.Unmerge();
        AssertClose(before["k.weight"], m.k.Weight, 1e-14);
        AssertSameRun(reference, Run(m, [4, 12]));
        Assert.Equal(2, group.FusedProducts);
    }

    [Fact]
    public void BaseWeightsSaveFromAndLoadIntoTheSharedBuffer()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"peft-siblings-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            using var fused = LoRAModule();
            var group = Assert.Single(fused.FuseSiblingProjections().Linked);
            using var other = LoRAModule();
            using (no_grad())
            {
                foreach (var (name, p) in other.named_parameters().Where(n => n.name.EndsWith("weight", StringComparison.Ordinal) && !n.name.Contains("lora", StringComparison.Ordinal)))
                {
                    p.add_(randn_like(p)); // other base weights, same adapters
                }
            }

            // Saved from the fused model's views, the file is the separate model's weights.
            string saved = Path.Combine(dir, "fused.safetensors");
            global::Peft.Serialization.ModelWeights.Save(fused, saved);
            using var fresh = new Qkv(bias: true);
            global::Peft.Serialization.ModelWeights.Load(fresh, saved);
            foreach (var (name, value) in fresh.state_dict())
            {
                AssertClose(fused.state_dict()[name], value, 0);
            }

            // Loaded into the fused model, another base reaches the one product.
            string replaced = Path.Combine(dir, "other.safetensors");
            global::Peft.Serialization.ModelWeights.Save(other, replaced);
            global::Peft.Serialization.ModelWeights.Load(fused, replaced);
            var expected = Run(other, [3, 12]);
            AssertSameRun(expected, Run(fused, [3, 12]));
            Assert.Equal(1, group.FusedProducts);
            Assert.Equal(1, group.BufferBuilds);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void SharesGoOnlyToTheSameInputObject()
    {
        using var m = LoRAModule();
        m.FuseSiblingProjections();
        using (no_grad())
        {
            manual_seed(1);
            var x = randn(3, 12, dtype: ScalarType.Float64);
            var other = randn(3, 12, dtype: ScalarType.Float64);
            m.q.call(x);
            var kOther = m.k.call(other); // not the input q saw: k runs alone on it
            m.UnfuseSiblingProjections();
            AssertClose(m.k.call(other), kOther);
        }
    }

    [Fact]
    public void DoRAMembersShareTheProductWithTheirRowScale()
    {
        using var m = new Qkv(bias: true);
        Adapt(m.q, new DoRAOptions(Rank: 2, Alpha: 4));
        Adapt(m.k, new LoRAOptions(Rank: 3));
        Adapt(m.v, new DoRAOptions(Rank: 2, Alpha: 2));
        var separate = Run(m, [2, 4, 12]);
        var group = Assert.Single(m.FuseSiblingProjections().Linked);
        var fused = Run(m, [2, 4, 12]);
        Assert.Equal(1, group.FusedProducts);
        AssertSameRun(separate, fused);
        Assert.Equal(8, fused.Grads.Length); // A, B and the magnitude of each DoRA member; A and B of the LoRA one
    }

    [Fact]
    public void MembersThatNeedTheirOwnProductRunSeparately()
    {
        using var m = new Qkv(bias: true);
        Adapt(m.q, new DoRAOptions(Rank: 2, Dropout: 0.5));
        Adapt(m.k, new LoRAOptions(Rank: 2));
        var group = Assert.Single(m.FuseSiblingProjections().Linked);

        // DoRA with dropout in training takes its base term from the dropped-out input: not the group's product.
        m.train();
        var separate = Run(m, [4, 12], seed: 9);
        m.UnfuseSiblingProjections();
        AssertSameRun(separate, Run(m, [4, 12], seed: 9));
        group = Assert.Single(m.FuseSiblingProjections().Linked);
        AssertSameRun(separate, Run(m, [4, 12], seed: 9));
        Assert.Equal(0, group.FusedProducts);
        Assert.Contains("'q'", group.LastFallbackReason, StringComparison.Ordinal);

        // In eval mode it shares the product; a base weight unfrozen after linking makes the layers run separately again.
        m.eval();
        Run(m, [4, 12]);
        Assert.Equal(1, group.FusedProducts);
        m.v.Weight.requires_grad = true;
        Run(m, [4, 12]);
        Assert.Equal(1, group.FusedProducts);
        Assert.Contains("'v'", group.LastFallbackReason, StringComparison.Ordinal);
    }

    [Fact]
    public void AnUncalibratedCorDAMemberStillRefusesToRun()
    {
        using var m = new Qkv(bias: false);
        Adapt(m.q, new LoRAOptions(Rank: 2, Init: LoRAInit.CorDA));
        Adapt(m.k, new LoRAOptions(Rank: 2));
        m.q.FusedKernel = true; // neither the sibling product nor the fused kernel may read its zero factors
        var group = Assert.Single(m.FuseSiblingProjections().Linked);
        using var x = randn(2, 12, dtype: ScalarType.Float64);
        var error = Assert.Throws<PeftConfigurationException>(() => m.Project(x));
        Assert.Contains("PreprocessCorDA", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, group.FusedProducts);
    }

    [Fact]
    public void DropoutDrawsTheSameMasksAsTheSeparateLayers()
    {
        using var m = new Qkv(bias: false);
        Adapt(m.q, new LoRAOptions(Rank: 2, Dropout: 0.5));
        Adapt(m.v, new LoRAOptions(Rank: 2, Dropout: 0.25));
        m.train();
        var separate = Run(m, [6, 12], seed: 21);
        var group = Assert.Single(m.FuseSiblingProjections().Linked);
        AssertSameRun(separate, Run(m, [6, 12], seed: 21));
        Assert.Equal(1, group.FusedProducts);
    }

    [Fact]
    public void AConversionAfterLinkingRebuildsTheBuffer()
    {
        using var m = LoRAModule();
        var group = Assert.Single(m.FuseSiblingProjections().Linked);
        m.to(ScalarType.Float32);
        using (no_grad())
        {
            manual_seed(2);
            var x = randn(4, 12);
            var fused = m.Project(x);
            Assert.Equal(1, group.FusedProducts);
            Assert.Equal(2, group.BufferBuilds);
            Assert.Equal(ScalarType.Float32, fused[0].dtype);
            m.UnfuseSiblingProjections();
            var separate = m.Project(x);
            for (int i = 0; i < 3; i++)
            {
                AssertClose(separate[i], fused[i], 1e-5);
            }
        }
    }

    [Fact]
    public void LinkingRulesNameTheGroupAndTheReason()
    {
        using var widths = new Qkv(bias: false, inV: 8);
        Adapt(widths.q, new LoRAOptions(Rank: 2));
        Adapt(widths.v, new LoRAOptions(Rank: 2));
        var report = widths.FuseSiblingProjections();
        Assert.Empty(report.Linked);
        Assert.Contains("input widths differ", Assert.Single(report.Skipped).Reason, StringComparison.Ordinal);

        using var trained = LoRAModule();
        trained.k.Weight.requires_grad = true;
        Assert.Contains("train", Assert.Single(trained.FuseSiblingProjections().Skipped).Reason, StringComparison.Ordinal);
        Assert.Null(trained.q.Siblings);
    }

    private sealed class Misnamed : nn.Module, ISiblingProjections
    {
        private static readonly IReadOnlyList<IReadOnlyList<string>> s_groups = [["q", "query"]];

        public Misnamed() : base(nameof(Misnamed))
        {
            q = AdaptedLinear.Wrap(nn.Linear(4, 4), "q");
            RegisterComponents();
        }

#pragma warning disable SA1401, IDE1006
        public AdaptedLinear q;
#pragma warning restore SA1401, IDE1006

        public IReadOnlyList<IReadOnlyList<string>> SiblingProjections => s_groups;
    }

    [Fact]
    public void ADeclaredNameTheModuleLacksIsAnError()
    {
        using var m = new Misnamed();
        var error = Assert.Throws<PeftConfigurationException>(() => m.FuseSiblingProjections());
        Assert.Contains("'query'", error.Message, StringComparison.Ordinal);
        Assert.Contains("field names", error.Message, StringComparison.Ordinal);
    }
}
