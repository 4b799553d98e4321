using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// The <see cref="IQuantizedResidualAdapter"/> seam, with a test adapter whose residual is the quantized weight
/// (<c>Q = dequant(quant(W))</c> in the base, the error <c>W − Q</c> as its dense update): <see cref="AdaptedLinear.QuantizeBase"/>
/// stores exactly the adapter's codes (not a re-quantization of Q), the residual check then reads the dequantized weight, and the
/// refusals name the member and the fix (another format, a residual of another kind, codes handed over already).
/// </summary>
public class QuantizedResidualTests
{
    private static AdaptedLinear Layer(int seed = 3)
    {
        torch.manual_seed(seed);
        var layer = AdaptedLinear.Wrap(nn.Linear(64, 48), "q_proj");
        using (torch.no_grad())
        {
            using var normal = torch.randn(new long[] { 48, 64 }, generator: new Generator((ulong)seed)) * 0.1;
            layer.Weight.copy_(normal);
        }

        layer.Weight.requires_grad = false;
        layer.Bias!.requires_grad = false;
        return layer;
    }

    [Theory]
    [InlineData(QuantizationFormat.NF4)]
    [InlineData(QuantizationFormat.Int8)]
    public void QuantizeBaseStoresTheAdaptersOwnCodesAndTheResidualCheckReadsThem(QuantizationFormat format)
    {
        using var layer = Layer();
        using var original = layer.Weight.clone();
        using var x = torch.randn(5, 64);
        using var before = layer.forward(x);
        layer.WithAdapter("q", new QuantizedHalfOptions(format));
        using var q = layer.Weight.clone();
        using var atInit = layer.forward(x);
        TensorAssert.Close(before, atInit, 1e-5);

        layer.QuantizeBase(format);
        Assert.NotNull(layer.QuantizedBase);
        using var stored = layer.QuantizedBase!.Dequantize();
        TensorAssert.Equal(q, stored);
        layer.EnsureResidualBase();
        using var after = layer.forward(x);
        TensorAssert.Close(before, after, 1e-5);

        // A plain re-quantization of Q is not Q for NF4 (the absmaxes are quantized again around their mean): this is why
        // the layer takes the adapter's codes.
        if (format == QuantizationFormat.NF4)
        {
            var again = QuantizedWeight.Quantize(q, format);
            using var requantized = again.Dequantize();
            Assert.True(TensorAssert.MaxAbsDiff(q, requantized) > 0);
            foreach (var buffer in again.Buffers.Values) buffer.Dispose();
        }

        Assert.True(TensorAssert.MaxAbsDiff(original, stored) > 0);
    }

    [Fact]
    public void AnotherFormatIsRefusedNamingTheMemberAndTheFittedFormat()
    {
        using var layer = Layer();
        layer.WithAdapter("q", new QuantizedHalfOptions(QuantizationFormat.NF4));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.QuantizeBase(QuantizationFormat.Int8));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("QuantizeBase(QuantizationFormat.NF4)", ex.Message);
        Assert.Null(layer.QuantizedBase);
        layer.QuantizeBase(QuantizationFormat.NF4);
        Assert.NotNull(layer.QuantizedBase);
    }

    [Fact]
    public void ADenseResidualIsStillRefused()
    {
        using var layer = Layer();
        layer.WithAdapter("pissa", new LoRAOptions(Rank: 2, Init: LoRAInit.PiSSA));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.QuantizeBase(QuantizationFormat.NF4));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("LoftQ", ex.Message);
        Assert.Null(layer.QuantizedBase);
    }

    [Fact]
    public void CodesHandedOverOnceAreNotReinventedFromTheDenseValues()
    {
        using var layer = Layer();
        layer.WithAdapter("q", new QuantizedHalfOptions(QuantizationFormat.NF4));
        layer.QuantizeBase(QuantizationFormat.NF4);
        Assert.True(layer.DequantizeBase());
        layer.EnsureResidualBase();
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.QuantizeBase(QuantizationFormat.NF4));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains("ReinitializeFromBase", ex.Message);
    }

    [Fact]
    public void AChangedDenseBaseIsRefusedBeforeQuantizing()
    {
        using var layer = Layer();
        layer.WithAdapter("q", new QuantizedHalfOptions(QuantizationFormat.Int8));
        using (torch.no_grad()) layer.Weight.mul_(2);
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.QuantizeBase(QuantizationFormat.Int8));
        Assert.Contains("q_proj", ex.Message);
        Assert.Null(layer.QuantizedBase);
    }

    private sealed record QuantizedHalfOptions(QuantizationFormat Format) : PeftAdapterOptions
    {
        public override PeftMethod Method => QuantizedMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new QuantizedAdapter(adapterName, layer, this);
    }

    /// <summary>Base Q = dequant(quant(W)); the update is the quantization error D = W − Q.</summary>
    private sealed class QuantizedAdapter : PeftAdapter, IAdditiveAdapter, IQuantizedResidualAdapter
    {
        private readonly QuantizedHalfOptions _options;
        private QuantizedWeight? _codes;

        public QuantizedAdapter(string name, PeftLayerInfo layer, QuantizedHalfOptions options)
            : base(name, layer)
        {
            _options = options;
            D = CreateParameter("error", layer.OutFeatures, layer.InFeatures);
            using var noGrad = torch.no_grad();
            D.zero_();
        }

        public Parameter D { get; }

        public override PeftAdapterOptions Config => _options;

        public bool RewritesBase => true;

        public string BaseRewriteName => "quantized test";

        public QuantizationFormat? ResidualFormat => _options.Format;

        public QuantizedWeight? TakeQuantizedResidual()
        {
            var codes = _codes;
            _codes = null;
            return codes;
        }

        public void InitializeFromBase(LayerParameters layer)
        {
            _codes = QuantizedWeight.Quantize(layer.Weight, _options.Format);
            using var q = _codes.Dequantize();
            using var error = layer.Weight - q;
            D.copy_(error);
            layer.Weight.copy_(q);
        }

        public void AddTo(Tensor input, Tensor output)
        {
            using var update = F.linear(input, D);
            output.add_(update);
        }

        public Tensor DeltaWeight() => D.clone();

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("error", D);
        }
    }

    private sealed class QuantizedMethod : PeftMethod
    {
        public static readonly QuantizedMethod Instance = new();

        public override string Name => "QuantizedTest";

        public override string PeftType => "TEST_QUANTIZED";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

        public override Type AttributeType => typeof(QuantizedHalfOptions);

        public override Type OptionsType => typeof(QuantizedHalfOptions);

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "error" };

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

        public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
    }
}
