using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Bert;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using Peft.Models.UseLite;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Stacks;

/// <summary>
/// Every family's blocks offer the two insertion points (<see cref="ITransformerBlock"/>) the same way: nothing registered and
/// the same outputs while nothing is inserted; an inserted module sees each sub-layer's input and output with the widths the
/// block declares, once per block and forward, and what it returns is what the block adds.
/// </summary>
public sealed class BlockInsertionTests
{
    public static IEnumerable<object[]> Families => new[] { "llama", "gpt2", "bert", "uselite" }.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(Families))]
    public void WithNothingInsertedBlocksRegisterNothingAndOutputsAreUnchanged(string family)
    {
        using var reference = Create(family);
        using var model = Create(family);
        var (_, blocks) = TransformerBlocks.Find(model);
        Assert.All(blocks, b => Assert.Null(b.Insertions.Find(Sublayer.Attention)));
        Assert.DoesNotContain(model.named_modules(), m => m.name.Contains("_adapters", StringComparison.Ordinal));
        Assert.Equal(reference.state_dict().Keys, model.state_dict().Keys);

        // An inactive inserted module is skipped: bit-equal outputs, and it does not train.
        var probes = Insert(blocks);
        foreach (var p in probes) p.Active = false;
        using var y0 = Run(family, reference);
        using var y1 = Run(family, model);
        Assert.True(y0.eq(y1).all().item<bool>(), $"{family}: outputs changed by {(y0 - y1).abs().max().item<float>()}");
        Assert.All(probes, p => Assert.Equal(0, p.Calls));
        model.ApplyTrainability();
        Assert.DoesNotContain(model.named_parameters(), p => p.parameter.requires_grad && !IsHead(p.name));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void AnInsertedModuleSeesEachSublayerOnceAndWhatItReturnsIsAdded(string family)
    {
        using var reference = Create(family);
        using var model = Create(family);
        var (_, blocks) = TransformerBlocks.Find(model);

        // Returning the output itself is the identity: bit-equal to the model without insertions.
        var probes = Insert(blocks);
        using var y0 = Run(family, reference);
        using (var y1 = Run(family, model)) Assert.True(y0.eq(y1).all().item<bool>(), $"{family}: the identity insertion changed the output");
        Assert.All(probes, p => Assert.Equal(1, p.Calls));
        for (int i = 0; i < blocks.Count; i++)
        {
            foreach (var (probe, sublayer) in new[] { (probes[2 * i], Sublayer.Attention), (probes[(2 * i) + 1], Sublayer.FeedForward) })
            {
                var (input, output) = blocks[i].Insertions.Features(sublayer);
                Assert.Equal(input, probe.InputWidth);
                Assert.Equal(output, probe.OutputWidth);
            }
        }

        // A trained insertion changes the output, trains alone, and gets gradients.
        foreach (var p in probes) using (no_grad()) p.Shift.fill_(0.1f);
        model.ApplyTrainability();
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad && !IsHead(p.name)).ToList();
        Assert.Equal(probes.Count, trainable.Count);
        using var y2 = Run(family, model);
        Assert.False(y0.eq(y2).all().item<bool>(), $"{family}: the shift had no effect");
        using (var loss = y2.pow(2).mean()) loss.backward();
        Assert.All(probes, p => Assert.NotNull(p.Shift.grad));
        Assert.Contains(model.named_modules(), m => m.name.EndsWith(".output_adapters.adapters.probe_ffn", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void BottleneckAdaptersStartAsTheBaseModelOnEveryFamily(string family)
    {
        using var reference = Create(family);
        using var model = Create(family);
        model.AddBottleneckAdapters(BottleneckConfig.Houlsby() with { ReductionFactor = 4 });
        model.AddBottleneckAdapters(BottleneckConfig.ScaledParallel(), "parallel");
        using var y0 = Run(family, reference);
        using var y1 = Run(family, model);
        Assert.True(y0.eq(y1).all().item<bool>(), $"{family}: zero-initialised up projections changed the output");
        model.ApplyTrainability();
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad && !IsHead(p.name)).ToList();
        Assert.Equal(model.InsertedAdapters().Sum(a => a.Adapter.parameters().Count()), trainable.Count);
        Assert.All(trainable, p => Assert.Contains(".adapters.", p.name, StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void CompacterSharesOneRuleOnEveryFamily(string family)
    {
        using var reference = Create(family);
        using var model = Create(family);
        var inserted = model.AddBottleneckAdapters(BottleneckConfig.Compacter() with { ReductionFactor = 4 });
        var rule = Assert.Single(model.SharedParameters()).Parameter;
        Assert.All(inserted, a => Assert.Same(rule, a.Adapter.PhmUp.Rule));
        using var y0 = Run(family, reference);
        using var y1 = Run(family, model);
        double diff = (y0 - y1).abs().max().item<float>();
        Assert.True(diff < 1e-3, $"{family}: Compacter's near-identity init moved the output by {diff}");
        var trainable = model.TrainableParameters().Where(p => !model.named_parameters().Any(n => ReferenceEquals(n.parameter, p) && IsHead(n.name))).ToList();
        Assert.Equal(inserted.Sum(a => a.Adapter.parameters().Count()) + 1, trainable.Count);
    }

    // BERT's classification head is [Trainable] (PEFT's modules_to_save): it trains beside any adapter.
    private static bool IsHead(string name) => name.StartsWith("classifier.", StringComparison.Ordinal);

    private static List<Probe> Insert(IReadOnlyList<ITransformerBlock> blocks)
    {
        var probes = new List<Probe>();
        foreach (var block in blocks)
        {
            foreach (var (sublayer, name) in new[] { (Sublayer.Attention, "probe_attn"), (Sublayer.FeedForward, "probe_ffn") })
            {
                var probe = new Probe(name, block.Insertions.Features(sublayer).Output);
                block.Insertions.Insert(sublayer, probe);
                probes.Add(probe);
            }
        }

        return probes;
    }

    /// <summary>Records what it sees and returns <c>output + shift</c> (shift starts at zero).</summary>
    private sealed class Probe : SublayerAdapter
    {
        public Probe(string name, long width) : base(name)
        {
            Shift = nn.Parameter(zeros(width));
            register_parameter("shift", Shift);
        }

        public TorchSharp.Modules.Parameter Shift { get; }

        public int Calls { get; private set; }

        public long InputWidth { get; private set; }

        public long OutputWidth { get; private set; }

        public override Tensor Apply(Tensor input, Tensor output)
        {
            Calls++;
            InputWidth = input.shape[^1];
            OutputWidth = output.shape[^1];
            return output + Shift;
        }
    }

    private static nn.Module Create(string family) => StackFamilies.Create(family);

    private static Tensor Run(string family, nn.Module model) => StackFamilies.Run(family, model);
}
