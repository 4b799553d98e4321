using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// Trainable shared tensors (<see cref="SharedAdapterTensors.Parameters"/>, the seam VB-LoRA's vector bank uses), with a
/// test adapter <c>y += scale ⊙ bias[:out]</c> whose <c>bias</c> <c>[out_max]</c> is one parameter shared by every layer of
/// the adapter: it is a trainable parameter exactly once, gets the gradients of every layer, reaches an optimizer, follows
/// the trainability rule, is counted once, keeps its sharing and <c>requires_grad</c> through a dtype move, and is named
/// for checkpoints.
/// </summary>
public class SharedParameterTests
{
    private static (nn.Module<Tensor, Tensor> Model, AdaptedLinear[] Layers) TwoLayers(params string[] adapterNames)
    {
        var first = AdaptedLinear.Wrap(nn.Linear(4, 3), "fc1");
        var second = AdaptedLinear.Wrap(nn.Linear(3, 6), "fc2");
        foreach (var name in adapterNames)
        {
            first.WithAdapter(name, new BiasOptions());
            second.WithAdapter(name, new BiasOptions());
        }

        var model = nn.Sequential(("fc1", first), ("fc2", second));
        model.BindSharedTensors();
        return (model, new[] { first, second });
    }

    private static BiasAdapter Adapter(AdaptedLinear layer, string name = "default") => (BiasAdapter)layer.GetAdapter(name);

    [Fact]
    public void TheSharedTensorIsOneTrainableParameterCountedOnceAndNamedForCheckpoints()
    {
        var (model, layers) = TwoLayers("default");
        var bias = Adapter(layers[0]).SharedTensors!["shared_bias"];
        Assert.IsType<Parameter>(bias);
        Assert.Same(bias, Adapter(layers[1]).SharedTensors!["shared_bias"]);
        Assert.Equal(new long[] { 6 }, bias.shape);                          // sized by the largest out

        var trainable = model.TrainableParameters().ToList();
        Assert.Equal(3, trainable.Count);                                     // two scales and the bias, once
        Assert.Single(trainable, p => ReferenceEquals(p, bias));
        Assert.DoesNotContain(model.parameters(), p => ReferenceEquals(p, bias)); // registered in no module
        Assert.Single(model.AdapterParameters(), p => ReferenceEquals(p, bias));
        var named = Assert.Single(model.SharedParameters());
        Assert.Equal("base_model.shared_bias.default", named.Name);
        Assert.Same(bias, named.Parameter);

        var summary = model.GetTrainableSummary();
        Assert.Equal(3 + 6 + 6, summary.TrainableParameters);
        Assert.Equal((4 * 3) + 3 + (3 * 6) + 6 + 3 + 6 + 6, summary.AllParameters);
    }

    [Fact]
    public void EveryLayersGradientReachesTheSharedParameterAndAnOptimizerStepMovesItForAllLayers()
    {
        var (model, layers) = TwoLayers("default");
        var a1 = Adapter(layers[0]);
        var a2 = Adapter(layers[1]);
        using (torch.no_grad())
        {
            a1.Scale.copy_(torch.tensor(new float[] { 1, 2, 3 }));
            a2.Scale.copy_(torch.tensor(new float[] { 1, 1, 1, 1, 1, 10 }));
        }

        var parameters = model.TrainableParameters().ToList();
        using var x1 = torch.ones(2, 4);
        using var x2 = torch.ones(2, 3);
        using (var loss = layers[0].call(x1).sum() + layers[1].call(x2).sum()) loss.backward();
        // d/d bias[k] of Σ y1 + Σ y2 over 2 rows each: fc1 gives 2·scale1[k] for k < 3, fc2 gives 2·scale2[k] for k < 6.
        var bias = (Parameter)a1.SharedTensors!["shared_bias"];
        TensorAssert.Close(torch.tensor(new float[] { 4, 6, 8, 2, 2, 20 }), bias.grad!, 1e-6);

        using var optimizer = torch.optim.SGD(parameters, 0.5);
        optimizer.step();
        TensorAssert.Close(torch.tensor(new float[] { -2, -3, -4, -1, -1, -10 }), bias, 1e-6);
        Assert.Same(bias, a2.SharedTensors!["shared_bias"]);
    }

    [Fact]
    public void TheSharedParameterTrainsWhileItsAdapterIsLiveOnAnyLayer()
    {
        var (model, layers) = TwoLayers("default", "other");
        var mine = (Parameter)Adapter(layers[0]).SharedTensors!["shared_bias"];
        var theirs = (Parameter)Adapter(layers[0], "other").SharedTensors!["shared_bias"];
        Assert.NotSame(mine, theirs);
        Assert.Equal(new[] { "base_model.shared_bias.default", "base_model.shared_bias.other" }, model.SharedParameters().Select(p => p.Name));

        model.SetActiveAdapter("other");
        var trainable = model.TrainableParameters().ToList();
        Assert.False(mine.requires_grad);
        Assert.True(theirs.requires_grad);
        Assert.Single(trainable, p => ReferenceEquals(p, theirs));
        Assert.DoesNotContain(trainable, p => ReferenceEquals(p, mine));

        layers[1].SetActiveAdapters("default");                              // live on one layer is enough
        model.ApplyTrainability();
        Assert.True(mine.requires_grad);
    }

    [Fact]
    public void ADtypeMoveConvertsItOnceForEveryLayerAndKeepsItTrainable()
    {
        var (model, layers) = TwoLayers("default");
        using (torch.no_grad()) Adapter(layers[0]).SharedTensors!["shared_bias"].fill_(0.25);
        model.to(ScalarType.Float64);
        var bias = Adapter(layers[0]).SharedTensors!["shared_bias"];
        Assert.Equal(ScalarType.Float64, bias.dtype);
        Assert.IsType<Parameter>(bias);
        Assert.True(bias.requires_grad);
        Assert.Same(bias, Adapter(layers[1]).SharedTensors!["shared_bias"]);
        TensorAssert.Equal(torch.full(6, 0.25, ScalarType.Float64), bias);
        Assert.Single(model.TrainableParameters(), p => ReferenceEquals(p, bias));

        using var x = torch.ones(1, 4, dtype: ScalarType.Float64);
        using (var loss = model.call(x).sum()) loss.backward();
        Assert.NotNull(bias.grad);
    }

    [Fact]
    public void ANameThatIsNotInTheSetOrAnIntegerTensorCannotBeTrainable()
    {
        var ex = Assert.Throws<ArgumentException>(() => new SharedAdapterTensors(new[] { ("a", torch.zeros(2)) }, true, new[] { "b" }));
        Assert.Contains("'b' is not in the set", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => new SharedAdapterTensors(new[] { ("a", torch.zeros(2, ScalarType.Int64)) }, true, new[] { "a" }));
        Assert.Contains("must be floating point", ex.Message, StringComparison.Ordinal);
    }

    private sealed record BiasOptions : PeftAdapterOptions
    {
        public override PeftMethod Method => BiasMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new BiasAdapter(adapterName, layer, this);
    }

    /// <summary><c>y += scale ⊙ bias[:out]</c>: <c>scale</c> <c>[out]</c> (ones) per layer, <c>bias</c> shared and trainable.</summary>
    private sealed class BiasAdapter : PeftAdapter, IAdditiveAdapter, ISharedTensorAdapter
    {
        private readonly BiasOptions _options;
        private SharedAdapterTensors? _shared;

        public BiasAdapter(string name, PeftLayerInfo layer, BiasOptions options)
            : base(name, layer)
        {
            _options = options;
            Scale = CreateParameter("scale", layer.OutFeatures);
            using (torch.no_grad()) Scale.fill_(1);
            TrackDevice(Scale);
        }

        public Parameter Scale { get; private set; }

        public override PeftAdapterOptions Config => _options;

        public SharedAdapterTensors? SharedTensors => _shared;

        public string? Misfit(SharedAdapterTensors tensors) => tensors["shared_bias"].shape[0] < OutFeatures ? "too small" : null;

        public void Bind(SharedAdapterTensors tensors) => _shared = tensors.To(Scale.dtype, Scale.device);

        public void AddTo(Tensor input, Tensor output)
        {
            using var slice = _shared!["shared_bias"].narrow(0, 0, OutFeatures);
            using var term = Scale * slice;
            output.add_(term);
        }

        public Tensor DeltaWeight() => throw new NotSupportedException("a bias has no weight update");

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("scale", Scale);
        }

        protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
        {
            base._toEpilog(dtype, device, non_blocking);
            Scale = RegisteredParameter("scale")!;
            _shared = _shared?.To(Scale.dtype, Scale.device);
        }
    }

    private sealed class BiasMethod : PeftMethod
    {
        public static readonly BiasMethod Instance = new();

        public override string Name => "SharedBias";

        public override string PeftType => "TEST_SHARED_BIAS";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

        public override Type AttributeType => typeof(BiasOptions);

        public override Type OptionsType => typeof(BiasOptions);

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "scale" };

        public override IReadOnlyList<string> SharedTensorNames { get; } = new[] { "shared_bias" };

        public override IReadOnlyList<string> TrainableSharedTensorNames { get; } = new[] { "shared_bias" };

        public override SharedAdapterTensors CreateSharedTensors(string adapterName, IReadOnlyList<(PeftAdapterOptions Options, PeftLayerInfo Layer)> layers)
            => new(new[] { ("shared_bias", torch.zeros(layers.Max(l => l.Layer.OutFeatures))) }, persistent: true, trainable: new[] { "shared_bias" });

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

        public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
    }
}
