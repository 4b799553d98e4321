using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Bottleneck;

/// <summary>
/// The shared-tensor seam for inserted adapters: a trainable tensor bound to every block's inserted adapter of one name is one
/// parameter of the model, counted, trained and listed once, and it stops training when every adapter holding it is inactive.
/// </summary>
public sealed class InsertedSharedTensorTests
{
    [Fact]
    public void ASharedTrainableTensorOfInsertedAdaptersIsOneParameterCountedOnce()
    {
        using var model = new UserStack(5);
        var set = new SharedAdapterTensors([("scale", torch.full(new long[] { 1 }, 0.5f))], persistent: true, trainable: ["scale"]);
        var adapters = new List<ScaledCopy>();
        var (_, blocks) = TransformerBlocks.Find(model);
        foreach (var block in blocks)
        {
            var adapter = new ScaledCopy("shared");
            adapter.Bind(set);
            block.Insertions.Insert(Sublayer.FeedForward, adapter);
            adapters.Add(adapter);
        }

        long baseCount = model.parameters().Sum(p => p.numel());
        var summary = model.GetTrainableSummary();
        Assert.Equal((3 * UserStack.Width) + 1, summary.TrainableParameters);   // each adapter's own bias, and the shared scale once
        Assert.Equal(baseCount + 1, summary.AllParameters);
        var shared = Assert.Single(model.SharedParameters());
        Assert.Equal("base_model.scale.shared", shared.Name);
        Assert.Same(set.Parameters.Single().Parameter, shared.Parameter);
        Assert.Single(model.TrainableParameters(), p => ReferenceEquals(p, shared.Parameter));
        Assert.Single(model.AdapterParameters(), p => ReferenceEquals(p, shared.Parameter));

        // One backward: the shared scale's gradient is the sum over all three blocks' adapters.
        using var ids = UserStack.Ids();
        using (var loss = model.call(ids).sum()) loss.backward();
        Assert.NotNull(shared.Parameter.grad);
        Assert.NotEqual(0f, shared.Parameter.grad!.item<float>());

        // All three inactive: the shared scale freezes with them; one active again: it trains again.
        foreach (var adapter in adapters) adapter.Active = false;
        model.ApplyTrainability();
        Assert.False(shared.Parameter.requires_grad);
        adapters[1].Active = true;
        model.ApplyTrainability();
        Assert.True(shared.Parameter.requires_grad);
    }

    /// <summary>A test adapter: <c>h + s·x + b</c> with <c>s</c> a shared trainable scalar and <c>b</c> its own bias.</summary>
    private sealed class ScaledCopy : SublayerAdapter, ISharedTensorAdapter
    {
        private readonly Parameter bias;

        public ScaledCopy(string name) : base(name)
        {
            bias = new Parameter(torch.zeros(UserStack.Width));
            register_parameter(nameof(bias), bias);
        }

        public SharedAdapterTensors? SharedTensors { get; private set; }

        public string? Misfit(SharedAdapterTensors tensors) => null;

        public void Bind(SharedAdapterTensors tensors) => SharedTensors = tensors;

        public override Tensor Apply(Tensor input, Tensor output)
        {
            using var scope = NewDisposeScope();
            var s = SharedTensors!["scale"];
            return (output + (s * input) + bias).MoveToOuterDisposeScope();
        }
    }
}
