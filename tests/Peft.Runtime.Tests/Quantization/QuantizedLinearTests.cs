using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Quantization;

/// <summary>QLoRA on a layer: LoRA trains over a quantized frozen base; merging goes through a dense weight.</summary>
public class QuantizedLinearTests
{
    private static (AdaptedLinear Layer, LoRAAdapter LoRA) QLoRA(QuantizationFormat format, long inF = 64, long outF = 48)
    {
        torch.manual_seed(11);
        var layer = AdaptedLinear.Wrap(nn.Linear(inF, outF), "q_proj").WithLoRA("default", new LoRAOptions(Rank: 4, Alpha: 8));
        layer.Weight.requires_grad = false;
        var lora = (LoRAAdapter)layer.GetAdapter("default");
        TensorAssert.Randomize(lora.B, 0.3);
        layer.QuantizeBase(format);
        return (layer, lora);
    }

    [Theory]
    [InlineData(QuantizationFormat.NF4)]
    [InlineData(QuantizationFormat.Int8)]
    public void ForwardAndGradientsEqualLoRAOnTheDequantizedWeight(QuantizationFormat format)
    {
        var (layer, lora) = QLoRA(format);
        using var dense = layer.QuantizedBase!.Dequantize();
        using var x = torch.randn(2, 5, 64, requires_grad: true);
        using var y = layer.call(x);
        using var a = lora.A.detach().requires_grad_(true);
        using var b = lora.B.detach().requires_grad_(true);
        using var x2 = x.detach().requires_grad_(true);
        using var expected = F.linear(x2, dense, layer.Bias!.detach()) + 2.0 * F.linear(F.linear(x2, a), b);
        TensorAssert.Close(expected, y, 1e-5);

        using var g = torch.randn(2, 5, 48);
        using (var l1 = (y * g).sum()) l1.backward();
        using (var l2 = (expected * g).sum()) l2.backward();
        TensorAssert.Close(a.grad!, lora.A.grad!, 1e-5);
        TensorAssert.Close(b.grad!, lora.B.grad!, 1e-5);
        TensorAssert.Close(x2.grad!, x.grad!, 1e-5);
        Assert.DoesNotContain(layer.named_parameters(), p => p.name == "weight");
        Assert.Contains(layer.named_buffers(), b2 => b2.name == QuantizedWeight.BufferNames(format)[0]);
    }

    [Fact]
    public void TheQuantizedLayerStartsAtTheQuantizedBaseAndStaysCloseToTheDenseOne()
    {
        torch.manual_seed(3);
        var layer = AdaptedLinear.Wrap(nn.Linear(256, 128), "v_proj").WithLoRA("default", new LoRAOptions(Rank: 8));
        layer.Weight.requires_grad = false;
        using var x = torch.randn(16, 256);
        using var before = layer.call(x).detach();
        long bytes = layer.QuantizeBase(QuantizationFormat.NF4);
        Assert.Equal(QuantizedWeight.StorageBytesFor(QuantizationFormat.NF4, 128, 256), bytes);
        using var after = layer.call(x).detach();
        double rel = ((after - before).square().mean().sqrt() / before.square().mean().sqrt()).item<float>();
        Assert.InRange(rel, 1e-4, 0.15);
    }

    [Fact]
    public void MergingNeedsTheDenseWeightAndThenGivesTheQuantizedAdaptedOutputs()
    {
        var (layer, _) = QLoRA(QuantizationFormat.NF4);
        using var x = torch.randn(3, 64);
        using var adapted = layer.call(x).detach();
        var e = Assert.Throws<PeftConfigurationException>(() => layer.Merge());
        Assert.Contains("q_proj", e.Message);
        Assert.Contains("DequantizeBase()", e.Message);

        Assert.True(layer.DequantizeBase());
        Assert.Null(layer.QuantizedBase);
        Assert.Contains(layer.named_parameters(), p => p.name == "weight");
        Assert.DoesNotContain(layer.named_buffers(), b => b.name.StartsWith("weight_nf4", StringComparison.Ordinal));
        using var unmergedDense = layer.call(x).detach();
        TensorAssert.Close(adapted, unmergedDense, 1e-5);
        layer.Merge();
        using var merged = layer.call(x).detach();
        TensorAssert.Close(adapted, merged, 1e-5);
    }

    [Fact]
    public void AdaptersThatNeedTheDenseWeightAreRefusedByName()
    {
        var (layer, _) = QLoRA(QuantizationFormat.NF4);
        var e = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("dora", new DoRAOptions(Rank: 2)));
        Assert.Contains("q_proj", e.Message);
        Assert.Contains("DequantizeBase()", e.Message);

        torch.manual_seed(2);
        var dora = AdaptedLinear.Wrap(nn.Linear(8, 8), "k_proj").WithAdapter("dora", new DoRAOptions(Rank: 2));
        dora.Weight.requires_grad = false;
        var refused = Assert.Throws<PeftConfigurationException>(() => dora.QuantizeBase(QuantizationFormat.Int8));
        Assert.Contains("'dora' (DoRA)", refused.Message);
        Assert.Contains("k_proj", refused.Message);
        Assert.Null(((AdaptedLinear)dora).QuantizedBase);
    }

    [Fact]
    public void ATrainableOrMergedOrQuantizedWeightIsRefused()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 8), "o_proj").WithLoRA("default", new LoRAOptions(Rank: 2));
        Assert.Contains("trainable", Assert.Throws<PeftConfigurationException>(() => layer.QuantizeBase(QuantizationFormat.NF4)).Message);
        layer.Weight.requires_grad = false;
        layer.Merge();
        Assert.Contains("Unmerge()", Assert.Throws<PeftConfigurationException>(() => layer.QuantizeBase(QuantizationFormat.NF4)).Message);
        layer.Unmerge();
        layer.QuantizeBase(QuantizationFormat.NF4);
        Assert.Contains("already", Assert.Throws<PeftConfigurationException>(() => layer.QuantizeBase(QuantizationFormat.Int8)).Message);
    }

    [Fact]
    public void APiSSAResidualIsNotQuantizedAndPiSSAIsNotAddedToAQuantizedBase()
    {
        torch.manual_seed(4);
        var pissa = AdaptedLinear.Wrap(nn.Linear(8, 6), "up_proj");
        pissa.Weight.requires_grad = false;
        pissa.WithAdapter("default", new LoRAOptions(Rank: 2, Init: LoRAInit.PiSSA));
        var e = Assert.Throws<PeftConfigurationException>(() => pissa.QuantizeBase(QuantizationFormat.NF4));
        Assert.Contains("up_proj", e.Message);
        Assert.Contains("residual", e.Message);

        var (quantized, _) = QLoRA(QuantizationFormat.NF4);
        var refused = Assert.Throws<PeftConfigurationException>(() => quantized.WithAdapter("pissa", new LoRAOptions(Rank: 2, Init: LoRAInit.PiSSA)));
        Assert.Contains("DequantizeBase()", refused.Message);
        Assert.False(quantized.HasAdapter("pissa"));
    }

    [Fact]
    public void InferenceBuildsNoGraphAndDisabledAdaptersGiveTheQuantizedBase()
    {
        var (layer, _) = QLoRA(QuantizationFormat.Int8);
        using var x = torch.randn(4, 64);
        using var dense = layer.QuantizedBase!.Dequantize();
        using var expectedBase = F.linear(x, dense, layer.Bias!);
        using (torch.no_grad())
        {
            using var y = layer.call(x);
            Assert.False(y.requires_grad);
        }

        layer.AdaptersDisabled = true;
        using var disabled = layer.call(x);
        TensorAssert.Close(expectedBase, disabled, 1e-6);
    }
}
