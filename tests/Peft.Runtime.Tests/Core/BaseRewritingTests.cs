using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// The <see cref="IBaseRewritingAdapter"/> seam, with a test adapter that takes half of the weight (<c>D = W / 2</c>, base
/// <c>W − D</c>, update <c>+D x</c>): the layer writes the residual in place at init and the output is unchanged; disabled is the
/// residual model; merge and unmerge; delete leaves the residual (as PEFT); refusal while merged; a base replaced after the
/// adapter was created is caught at the next model-level operation and <see cref="PeftModel.ReinitializeFromBase"/> fixes it.
/// </summary>
public class BaseRewritingTests
{
    private static AdaptedLinear Layer()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(3, 2, dtype: ScalarType.Float64), "q_proj");
        TensorAssert.Randomize(layer.Weight);
        layer.Weight.requires_grad = false;
        layer.Bias!.requires_grad = false;
        return layer;
    }

    [Fact]
    public void InitWritesTheResidualInPlaceAndKeepsTheOutput()
    {
        using var layer = Layer();
        using var original = layer.Weight.clone();
        var weightObject = layer.Weight;
        using var x = torch.randn(4, 3, dtype: ScalarType.Float64);
        using var before = layer.forward(x);
        layer.WithAdapter("half", new HalfOptions());

        Assert.Same(weightObject, layer.Weight);
        using var half = original / 2;
        TensorAssert.Close(half, layer.Weight, 1e-15);
        Assert.True(layer.HoldsResidualBase);
        using var after = layer.forward(x);
        TensorAssert.Close(before, after, 1e-12);

        layer.AdaptersDisabled = true;
        using var residualOut = layer.forward(x);
        using var expected = F.linear(x, half, layer.Bias);
        TensorAssert.Close(expected, residualOut, 1e-12);
        layer.AdaptersDisabled = false;

        layer.Merge();
        TensorAssert.Close(original, layer.Weight, 1e-12);
        layer.Unmerge();
        TensorAssert.Close(half, layer.Weight, 1e-12);

        layer.DeleteAdapter("half");
        TensorAssert.Close(half, layer.Weight, 1e-15);
        Assert.False(layer.HoldsResidualBase);
    }

    [Fact]
    public void AddingWhileMergedIsRefusedNamingTheMember()
    {
        using var layer = Layer();
        layer.WithAdapter("lora", new LoRAOptions(Rank: 1, Init: LoRAInit.Random));
        layer.Merge();
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("half", new HalfOptions()));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("Unmerge", ex.Message);
        Assert.False(layer.HasAdapter("half"));
    }

    [Fact]
    public void AReplacedBaseIsCaughtAndReinitializeFromBaseDerivesTheResidualAgain()
    {
        using var model = new Holder();
        model.Proj.WithAdapter("half", new HalfOptions());
        model.TrainableParameters();

        // A base checkpoint loaded after the adapter was created puts the original weight back.
        using var loaded = torch.randn(2, 3, dtype: ScalarType.Float64);
        using (torch.no_grad()) model.Proj.Weight.copy_(loaded);
        var ex = Assert.Throws<PeftConfigurationException>(() => model.TrainableParameters());
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("ReinitializeFromBase", ex.Message);

        model.ReinitializeFromBase();
        using var half = loaded / 2;
        TensorAssert.Close(half, model.Proj.Weight, 1e-15);
        model.TrainableParameters();

        // Once more would take the part out twice: refused.
        var twice = Assert.Throws<PeftConfigurationException>(() => model.ReinitializeFromBase());
        Assert.Contains("residual", twice.Message);
        TensorAssert.Close(half, model.Proj.Weight, 1e-15);
    }

    [Fact]
    public void AFingerprintTellsTheResidualFromTheOriginalAndSurvivesADtypeMove()
    {
        using var layer = Layer();
        layer.WithAdapter("half", new HalfOptions());
        layer.to(ScalarType.Float32);
        layer.EnsureResidualBase();
        using var w = layer.Weight.clone();
        var residual = BaseFingerprint.Of(w);
        using var doubled = w * 2;
        Assert.False(residual.Matches(doubled));
        Assert.True(residual.Matches(w));
    }

    private sealed class Holder : nn.Module<Tensor, Tensor>
    {
        private readonly AdaptedLinear q_proj = Layer();

        public Holder()
            : base(nameof(Holder)) => register_module("q_proj", q_proj);

        public AdaptedLinear Proj => q_proj;

        public override Tensor forward(Tensor x) => q_proj.forward(x);
    }

    private sealed record HalfOptions : PeftAdapterOptions
    {
        public override PeftMethod Method => HalfMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new HalfAdapter(adapterName, layer, this);
    }

    /// <summary>Takes half of the weight: D = W / 2 at init, base W − D, update + D x.</summary>
    private sealed class HalfAdapter : PeftAdapter, IAdditiveAdapter, IBaseRewritingAdapter
    {
        private readonly HalfOptions _options;

        public HalfAdapter(string name, PeftLayerInfo layer, HalfOptions options)
            : base(name, layer)
        {
            _options = options;
            D = CreateParameter("half", layer.OutFeatures, layer.InFeatures);
            using var noGrad = torch.no_grad();
            D.zero_();
        }

        public Parameter D { get; }

        public override PeftAdapterOptions Config => _options;

        public bool RewritesBase => true;

        public string BaseRewriteName => "half";

        public void InitializeFromBase(LayerParameters layer)
        {
            using var half = layer.Weight / 2;
            D.copy_(half);
            layer.Weight.sub_(half);
        }

        public void AddTo(Tensor input, Tensor output)
        {
            using var update = F.linear(input, D);
            output.add_(update);
        }

        public Tensor DeltaWeight() => D.clone();

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("half", D);
        }
    }

    private sealed class HalfMethod : PeftMethod
    {
        public static readonly HalfMethod Instance = new();

        public override string Name => "Half";

        public override string PeftType => "TEST_HALF";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

        public override Type AttributeType => typeof(HalfOptions);

        public override Type OptionsType => typeof(HalfOptions);

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "half" };

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

        public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
    }
}
