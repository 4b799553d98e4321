using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// An adapter's frozen tensors (<see cref="PeftAdapter.FrozenParameters"/>) and a parameter sized by the base initialisation
/// (<c>ReplaceParameter</c>), with a test adapter <c>ΔW = g · B</c>: a trainable gain <c>g</c> and a frozen basis <c>B</c>
/// that starts empty and becomes a copy of the weight when the adapter joins its layer. The basis never trains, is not
/// counted as trainable, gets no gradient, still belongs to the adapter (its file, its moves) and keeps its slot.
/// </summary>
public class FrozenAdapterTensorsTests
{
    private sealed class Holder : nn.Module<Tensor, Tensor>
    {
        private readonly AdaptedLinear q_proj;

        public Holder()
            : base(nameof(Holder))
        {
            q_proj = AdaptedLinear.Wrap(nn.Linear(3, 2, dtype: ScalarType.Float64), "q_proj");
            register_module("q_proj", q_proj);
        }

        public AdaptedLinear Proj => q_proj;

        public override Tensor forward(Tensor x) => q_proj.forward(x);
    }

    [Fact]
    public void FrozenTensorsNeverTrainAndAreNotCounted()
    {
        using var model = new Holder();
        model.Proj.WithAdapter("basis", new BasisOptions());
        var adapter = (BasisAdapter)model.Proj.GetAdapter("basis");

        // The initialisation sized the basis from the weight, in the slot it was registered in.
        Assert.Equal(new long[] { 2, 3 }, adapter.Basis.shape);
        TensorAssert.Equal(model.Proj.Weight, adapter.Basis);
        Assert.Equal(new[] { "gain", "basis" }, adapter.named_parameters().Select(p => p.name));
        Assert.Same(adapter.Basis, adapter.named_parameters().Last().parameter);

        var trainable = model.TrainableParameters().ToList();
        Assert.Same(adapter.Gain, Assert.Single(trainable));
        Assert.False(adapter.Basis.requires_grad);
        Assert.Equal(1, adapter.TrainableParameterCount);
        Assert.Equal(1, model.GetTrainableSummary().TrainableParameters);
        Assert.Contains(adapter.Basis, model.AdapterParameters());

        using (torch.no_grad()) adapter.Gain.fill_(0.5);
        using var x = torch.randn(4, 3, dtype: ScalarType.Float64);
        using var loss = model.forward(x).pow(2).sum();
        loss.backward();
        Assert.NotNull(adapter.Gain.grad);
        Assert.Null(adapter.Basis.grad);
    }

    [Fact]
    public void FrozenTensorsStayFrozenWhenTheAdapterIsDeactivatedAndActivatedAgain()
    {
        using var model = new Holder();
        model.Proj.WithAdapter("basis", new BasisOptions());
        var adapter = (BasisAdapter)model.Proj.GetAdapter("basis");
        model.Proj.AdaptersDisabled = true;
        model.ApplyTrainability();
        Assert.False(adapter.Gain.requires_grad);
        model.Proj.AdaptersDisabled = false;
        model.ApplyTrainability();
        Assert.True(adapter.Gain.requires_grad);
        Assert.False(adapter.Basis.requires_grad);
    }

    [Fact]
    public void ReplacingAnUnknownParameterIsRefusedNamingIt()
    {
        var layer = new PeftLayerInfo(PeftLayerKind.Linear, 3, 2, false, CPU, ScalarType.Float64, "q_proj");
        using var adapter = new BasisAdapter("basis", layer, new BasisOptions());
        var ex = Assert.Throws<InvalidOperationException>(() => adapter.ReplaceUnknown());
        Assert.Contains("nope", ex.Message);
    }

    private sealed record BasisOptions : PeftAdapterOptions
    {
        public override PeftMethod Method => BasisMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new BasisAdapter(adapterName, layer, this);
    }

    /// <summary>ΔW = g · B with g trainable ([1], zero at init) and B frozen (a copy of the weight, sized at init).</summary>
    private sealed class BasisAdapter : PeftAdapter, IAdditiveAdapter, IBaseInitializedAdapter
    {
        private readonly BasisOptions _options;

        public BasisAdapter(string name, PeftLayerInfo layer, BasisOptions options)
            : base(name, layer)
        {
            _options = options;
            Gain = CreateParameter("gain", 1);
            Basis = CreateParameter("basis", 0, 0);
            using var noGrad = torch.no_grad();
            Gain.zero_();
        }

        public Parameter Gain { get; }

        public Parameter Basis { get; private set; }

        public override PeftAdapterOptions Config => _options;

        public void InitializeFromBase(LayerParameters layer) => Basis = ReplaceParameter("basis", layer.Weight);

        public void ReplaceUnknown() => ReplaceParameter("nope", Gain);

        public void AddTo(Tensor input, Tensor output)
        {
            using var scaled = Basis * Gain;
            using var update = F.linear(input, scaled);
            output.add_(update);
        }

        public Tensor DeltaWeight() => Basis * Gain;

        public override IEnumerable<Parameter> FrozenParameters()
        {
            yield return Basis;
        }

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("gain", Gain);
            yield return ("basis", Basis);
        }
    }

    private sealed class BasisMethod : PeftMethod
    {
        public static readonly BasisMethod Instance = new();

        public override string Name => "Basis";

        public override string PeftType => "TEST_BASIS";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

        public override Type AttributeType => typeof(BasisOptions);

        public override Type OptionsType => typeof(BasisOptions);

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "gain", "basis" };

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

        public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
    }
}
