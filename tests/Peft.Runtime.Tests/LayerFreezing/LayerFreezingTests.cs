using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.LayerFreezing;

/// <summary>
/// Telly-style freezing on a user's own model that offers <see cref="ITransformerStack"/>: frozen parameters get no
/// gradients, the rest the same gradients as without freezing, eval outputs equal the full model's, and a frozen bottom runs
/// without the autograd graph.
/// </summary>
[Collection(Peft.Runtime.Tests.Training.GlobalRandomCollection.Name)]
public sealed class LayerFreezingTests
{
    [Fact]
    public void BottomKFreezesTheEmbeddingsAndKBlocksAndRunsThemWithoutTheGraph()
    {
        using var full = new UserStack(seed: 1);
        using var model = new UserStack(seed: 1);
        var frozen = model.FreezeLayers(new Peft.LayerFreezing(bottom: 2));
        Assert.Equal(3, frozen.Count);   // the embedding and blocks 0 and 1

        full.eval();
        model.eval();
        using (var a = full.call(UserStack.Ids()))
        using (var b = model.call(UserStack.Ids())) TensorAssert.Equal(a, b);

        full.train();
        model.train();
        using (var l = full.call(UserStack.Ids()).square().mean()) l.backward();
        using (var l = model.call(UserStack.Ids()).square().mean()) l.backward();
        // Blocks 0 and 1 ran under no_grad, and their outputs carry no graph; block 2's does.
        Assert.Equal(new[] { false, false, true, true }, model.LastBlocksGradEnabled);
        Assert.Equal(new[] { false, false, true, true }, model.LastBlockOutputsRequireGrad);
        Assert.Equal(new[] { true, true, true, true }, full.LastBlocksGradEnabled);
        Assert.Equal(new[] { true, true, true, true }, full.LastBlockOutputsRequireGrad);

        var reference = full.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var frozenSet = frozen.SelectMany(m => m.parameters()).ToHashSet(ReferenceEqualityComparer.Instance);
        Assert.Equal(1 + 2 * 2, frozenSet.Count);   // the embedding's weight, each frozen block's weight and bias
        foreach (var (name, p) in model.named_parameters())
        {
            if (frozenSet.Contains(p))
            {
                Assert.False(p.requires_grad, name);
                Assert.Null(p.grad);
            }
            else
            {
                Assert.True(p.requires_grad, name);
                TensorAssert.Close(reference[name].grad!, p.grad!, 1e-6);
            }
        }
    }

    [Fact]
    public void AnySetOfBlocksFreezesThoseOnlyAndThePrefixStopsAtTheFirstTrainedBlock()
    {
        using var model = new UserStack(seed: 2);
        model.FreezeLayers(Peft.LayerFreezing.Layers(1, 3));
        model.train();
        using (var l = model.call(UserStack.Ids()).square().mean()) l.backward();
        Assert.Equal(new[] { true, true, true, true }, model.LastBlocksGradEnabled);   // block 0 trains: graph from the bottom
        Assert.Equal(new[] { true, true, true, true }, model.LastBlockOutputsRequireGrad);
        Assert.Equal(new[] { true, false, true, false }, model.BlockList.Select(b => b.parameters().All(p => p.grad is not null)).ToArray());
        Assert.All(model.BlockList[1].parameters().Concat(model.BlockList[3].parameters()), p => Assert.Null(p.grad));
        Assert.Null(model.Embedding.parameters().Single().grad);
    }

    [Fact]
    public void TheGradientFreePrefixSwitchChangesNoGradient()
    {
        using var a = new UserStack(seed: 3);
        using var b = new UserStack(seed: 3);
        a.FreezeLayers(new Peft.LayerFreezing(bottom: 3));
        b.FreezeLayers(new Peft.LayerFreezing(bottom: 3));
        using (var l = a.call(UserStack.Ids()).square().mean()) l.backward();
        TransformerStacks.GradientFreePrefix = false;
        try
        {
            using var l = b.call(UserStack.Ids()).square().mean();
            l.backward();
            Assert.Equal(new[] { true, true, true, true }, b.LastBlocksGradEnabled);
            // libtorch records no graph anyway where neither the input nor a weight requires a gradient: the switch changes
            // whether the frozen bottom runs inside no_grad, not what is saved (docs/methods.md reports the measurement).
            Assert.Equal(new[] { false, false, false, true }, b.LastBlockOutputsRequireGrad);
        }
        finally
        {
            TransformerStacks.GradientFreePrefix = true;
        }

        TensorAssert.Equal(a.BlockList[3].parameters().First().grad!, b.BlockList[3].parameters().First().grad!);
    }

    [Fact]
    public void BlocksThatDoNotExistAreRefusedNamingTheStackAndItsSize()
    {
        using var model = new UserStack(seed: 4);
        var bottom = Assert.Throws<PeftConfigurationException>(() => model.FreezeLayers(new Peft.LayerFreezing(bottom: 5)));
        Assert.Contains("LayerFreezing(bottom: 5) asks for the bottom 5 blocks, but UserStack has 4 blocks (0 to 3)", bottom.Message, StringComparison.Ordinal);
        var named = Assert.Throws<PeftConfigurationException>(() => model.FreezeLayers(Peft.LayerFreezing.Layers(0, 7)));
        Assert.Contains("LayerFreezing.Layers(0, 7) names block 7", named.Message, StringComparison.Ordinal);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));   // nothing frozen by a refused configuration
        Assert.Throws<ArgumentOutOfRangeException>(() => new Peft.LayerFreezing(bottom: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Peft.LayerFreezing.Layers(-2));
    }

    [Fact]
    public void FreezingWithoutEmbeddingsKeepsThemTrainingAndTheGraph()
    {
        using var model = new UserStack(seed: 5);
        model.FreezeLayers(new Peft.LayerFreezing(bottom: 2, embeddings: false));
        Assert.True(model.Embedding.parameters().Single().requires_grad);
        Assert.Equal(0, model.GradientFreeBlocks());
    }

    /// <summary>A user's own model offering the stack contract: an embedding, four residual blocks and a head.</summary>
    private sealed class UserStack : nn.Module<Tensor, Tensor>, ITransformerStack
    {
        private readonly TorchSharp.Modules.Embedding embed;
        private readonly TorchSharp.Modules.ModuleList<nn.Module<Tensor, Tensor>> blocks;
        private readonly nn.Module<Tensor, Tensor> head;

        public UserStack(int seed) : base(nameof(UserStack))
        {
            torch.manual_seed(seed);
            embed = nn.Embedding(16, 6);
            blocks = new TorchSharp.Modules.ModuleList<nn.Module<Tensor, Tensor>>(Enumerable.Range(0, 4).Select(_ => (nn.Module<Tensor, Tensor>)nn.Linear(6, 6)).ToArray());
            head = nn.Linear(6, 2);
            RegisterComponents();
        }

        public static Tensor Ids() => torch.tensor(new long[] { 1, 2, 3, 15, 0, 7 }, new long[] { 2, 3 });

        public IReadOnlyList<nn.Module> EmbeddingModules => [embed];

        public IReadOnlyList<nn.Module> Blocks => blocks.Cast<nn.Module>().ToArray();

        public IReadOnlyList<nn.Module<Tensor, Tensor>> BlockList => blocks.ToArray();

        public nn.Module Embedding => embed;

        public bool[] LastBlockOutputsRequireGrad { get; private set; } = Array.Empty<bool>();

        public bool[] LastBlocksGradEnabled { get; private set; } = Array.Empty<bool>();

        public override Tensor forward(Tensor ids)
        {
            using var scope = NewDisposeScope();
            int frozen = this.GradientFreeBlocks();
            Tensor x;
            using (TransformerStacks.NoGradPrefix(frozen)) x = embed.call(ids);
            var flags = new bool[blocks.Count];
            var enabled = new bool[blocks.Count];
            for (int i = 0; i < blocks.Count; i++)
            {
                using (TransformerStacks.NoGradPrefix(frozen - i))
                {
                    enabled[i] = torch.is_grad_enabled();
                    x = x + nn.functional.tanh(blocks[i].call(x));
                }

                flags[i] = x.requires_grad;
            }

            LastBlockOutputsRequireGrad = flags;
            LastBlocksGradEnabled = enabled;
            return head.call(x).MoveToOuterDisposeScope();
        }
    }
}
