using Peft.Runtime.Tests.Core;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.LoftQ;

/// <summary>
/// LoftQ (catalogue 2.3) against hand-computed values and its defining property: two examples by hand (int8 and NF4, where
/// the rank covers the quantization error), the error ‖W − (Q + s·BA)‖ below plain quantization's and decreasing with
/// iterations, the forward, gradients, merge and unmerge on the quantized base, the base stored as exactly Q by
/// <c>QuantizeBase</c>, and the refused arguments.
/// </summary>
public class LoftQTests
{
    private readonly ITestOutputHelper _output;

    public LoftQTests(ITestOutputHelper output) => _output = output;

    private static AdaptedLinear Layer(Tensor weight)
    {
        var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: false, dtype: weight.dtype);
        using (torch.no_grad()) linear.weight!.copy_(weight);
        var layer = AdaptedLinear.Wrap(linear, "q_proj");
        layer.Weight.requires_grad = false;
        return layer;
    }

    private static LoRAAdapter Adapter(AdaptedLinear layer) => (LoRAAdapter)layer.GetAdapter("default");

    private static Tensor RandomWeight(long rows, long columns, int seed)
        => torch.randn(new[] { rows, columns }, generator: new Generator((ulong)seed)) * 0.1;

    [Fact]
    public void Int8ByHand()
    {
        // W = [[127, 0.4], [0, 1]], int8 with one absmax scale per row: row 0 has scale 1 and codes [127, round(0.4) = 0],
        // row 1 scale 1/127 and codes [0, 127], so Q = [[127, 0], [0, 1]] and W − Q = [[0, 0.4], [0, 0]] (rank 1, σ = 0.4,
        // u = e₁, v = e₂). r = 1, α = 2 (s = 2): A = [0, √(0.4/2)], B = [√0.2, 0]ᵀ (common sign free), s·BA = W − Q exactly.
        using var w = torch.tensor(new float[,] { { 127, 0.4f }, { 0, 1 } });
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 1, Alpha: 2, Init: LoRAInit.LoftQ, LoftQBits: 8));
        var lora = Adapter(layer);
        using var q = torch.tensor(new float[,] { { 127, 0 }, { 0, 1 } });
        TensorAssert.Close(q, layer.Weight, 1e-6);
        double sign = Math.Sign(lora.A[0, 1].item<float>());
        using var expectedA = torch.tensor(new float[,] { { 0, (float)(sign * Math.Sqrt(0.2)) } });
        using var expectedB = torch.tensor(new float[,] { { (float)(sign * Math.Sqrt(0.2)) }, { 0 } });
        TensorAssert.Close(expectedA, lora.A, 1e-6);
        TensorAssert.Close(expectedB, lora.B, 1e-6);
        using var delta = lora.DeltaWeight();
        using var sum = layer.Weight + delta;
        TensorAssert.Close(w, sum, 1e-5);
    }

    [Fact]
    public void Nf4ByHand()
    {
        // W = [[1, 0.3]]: one NF4 block with absmax 1 (its double quantization is exact: one absmax equal to the mean); 0.3
        // lies above the midpoint 0.2920 of the codes 0.2461 and 0.3379, so Q = [[1, 0.33791524]] and W − Q = [[0, −0.03791524]].
        // r = 1, α = 1: s·BA = W − Q, so the layer starts exactly at W.
        using var w = torch.tensor(new float[,] { { 1, 0.3f } });
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 1, Alpha: 1, Init: LoRAInit.LoftQ));
        using var q = torch.tensor(new float[,] { { 1, 0.33791524f } });
        TensorAssert.Close(q, layer.Weight, 1e-7);
        using var delta = Adapter(layer).DeltaWeight();
        using var expected = torch.tensor(new float[,] { { 0, 0.3f - 0.33791524f } });
        TensorAssert.Close(expected, delta, 1e-6);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(8)]
    public void TheErrorIsBelowPlainQuantizationsAndDecreasesWithIterations(int bits)
    {
        using var w = RandomWeight(64, 48, seed: 11);
        var format = LoftQInitialization.FormatFor(bits);
        var plain = QuantizedWeight.Quantize(w, format);
        using var deq = plain.Dequantize();
        using var none = torch.zeros(1, 48);
        using var noneB = torch.zeros(64, 1);
        double plainError = LoftQInitialization.Error(w, deq, none, noneB, 1);
        foreach (var b in plain.Buffers.Values) b.Dispose();

        var errors = new List<double>();
        foreach (int iterations in new[] { 1, 2, 5 })
        {
            var (a, bb, q, quantized) = LoftQInitialization.Run(w, rank: 4, scaling: 2.0, format, iterations);
            errors.Add(LoftQInitialization.Error(w, q, a, bb, 2.0));
            a.Dispose(); bb.Dispose(); q.Dispose();
            foreach (var t in quantized.Buffers.Values) t.Dispose();
        }

        _output.WriteLine($"{format}: plain {plainError:G6}, LoftQ T=1 {errors[0]:G6}, T=2 {errors[1]:G6}, T=5 {errors[2]:G6}");
        Assert.True(errors[0] < plainError, $"T=1 error {errors[0]} is not below plain quantization's {plainError}");
        Assert.True(errors[1] < errors[0], $"T=2 error {errors[1]} is not below T=1's {errors[0]}");
        Assert.True(errors[2] < errors[1], $"T=5 error {errors[2]} is not below T=2's {errors[1]}");
    }

    [Fact]
    public void ForwardGradientsMergeAndUnmergeOnTheQuantizedResidual()
    {
        using var w = RandomWeight(12, 10, seed: 3);
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 3, Alpha: 6, Init: LoRAInit.LoftQ, LoftQIterations: 3));
        var lora = Adapter(layer);
        using var q = layer.Weight.clone();
        using var x = torch.randn(new long[] { 5, 10 }, generator: new Generator(4));

        // y = Q x + s·B(A x), s = 2; close to W x (the LoftQ approximation), not equal to Q x.
        using var y = layer.forward(x);
        using var ax = x.matmul(lora.A.t());
        using var byHand = x.matmul(q.t()) + ax.matmul(lora.B.t()) * 2.0;
        TensorAssert.Close(byHand, y, 1e-5);
        using var original = x.matmul(w.t());
        using var quantOnly = x.matmul(q.t());
        double loftqGap = (y - original).abs().max().item<float>(), quantGap = (quantOnly - original).abs().max().item<float>();
        Assert.True(loftqGap < quantGap, $"LoftQ's start is {loftqGap} from W x, plain Q's {quantGap}");

        // Gradients of L = Σ g ⊙ y: dB = s·gᵀ(A x), dA = s·Bᵀ gᵀ x.
        using var g = torch.randn(new long[] { 5, 12 }, generator: new Generator(6));
        using (var loss = (layer.forward(x) * g).sum()) loss.backward();
        using var dB = g.t().matmul(ax) * 2.0;
        using var dA = lora.B.t().matmul(g.t()).matmul(x) * 2.0;
        TensorAssert.Close(dB, lora.B.grad!, 1e-5);
        TensorAssert.Close(dA, lora.A.grad!, 1e-5);
        Assert.Null(layer.Weight.grad);

        layer.Merge();
        using var merged = layer.forward(x);
        TensorAssert.Close(y, merged, 1e-5);
        using var delta = lora.DeltaWeight();
        using var qPlusDelta = q + delta;
        TensorAssert.Close(qPlusDelta, layer.Weight, 1e-6);
        layer.Unmerge();
        TensorAssert.Close(q, layer.Weight, 1e-6);
    }

    [Fact]
    public void QuantizeBaseStoresExactlyTheLoftQBaseAndTrainingRunsOnIt()
    {
        using var w = RandomWeight(16, 64, seed: 8);
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 4, Alpha: 4, Init: LoRAInit.LoftQ, LoftQIterations: 2));
        using var q = layer.Weight.clone();
        using var x = torch.randn(new long[] { 3, 64 }, generator: new Generator(1));
        using var dense = layer.forward(x);

        layer.QuantizeBase(QuantizationFormat.NF4);
        using var stored = layer.QuantizedBase!.Dequantize();
        TensorAssert.Equal(q, stored);
        using var quantized = layer.forward(x);
        TensorAssert.Close(dense, quantized, 1e-5);
        layer.EnsureResidualBase();

        using (var loss = layer.forward(x).square().sum()) loss.backward();
        Assert.NotNull(Adapter(layer).A.grad);
        Assert.NotNull(Adapter(layer).B.grad);

        var wrong = Assert.Throws<PeftConfigurationException>(() =>
        {
            using var other = Layer(w);
            other.WithAdapter("default", new LoRAOptions(Rank: 4, Init: LoRAInit.LoftQ));
            other.QuantizeBase(QuantizationFormat.Int8);
        });
        Assert.Contains("q_proj", wrong.Message);
        Assert.Contains("NF4", wrong.Message);
    }

    [Theory]
    [InlineData(LoRAInit.LoftQ, 2, 1, "LoftQBits must be 4 (NF4) or 8")]
    [InlineData(LoRAInit.LoftQ, 4, 0, "LoftQIterations must be at least 1")]
    [InlineData(LoRAInit.KaimingUniform, 8, 1, "apply to Init = LoRAInit.LoftQ only")]
    [InlineData(LoRAInit.PiSSA, 4, 3, "apply to Init = LoRAInit.LoftQ only")]
    public void BadArgumentsAreRefusedNamingTheMember(LoRAInit init, int bits, int iterations, string message)
    {
        using var w = RandomWeight(4, 4, seed: 1);
        using var layer = Layer(w);
        var ex = Assert.Throws<PeftConfigurationException>(() =>
            layer.WithAdapter("default", new LoRAOptions(Rank: 2, Init: init, LoftQBits: bits, LoftQIterations: iterations)));
        Assert.Contains("q_proj", ex.Message);
        Assert.Contains(message, ex.Message);
        Assert.False(layer.HasAdapter("default"));
    }

    [Fact]
    public void DoRAWithLoftQIsRefused()
    {
        using var w = RandomWeight(4, 4, seed: 1);
        using var layer = Layer(w);
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new DoRAOptions(Rank: 2, Init: LoRAInit.LoftQ)));
        Assert.Contains("LoftQ", ex.Message);
        Assert.Contains("[LoRA", ex.Message);
    }

    [Fact]
    public void DisabledIsTheQuantizedModelAndDeleteLeavesIt()
    {
        using var w = RandomWeight(6, 8, seed: 2);
        using var layer = Layer(w);
        layer.WithAdapter("default", new LoRAOptions(Rank: 2, Init: LoRAInit.LoftQ));
        using var q = layer.Weight.clone();
        using var x = torch.randn(new long[] { 2, 8 }, generator: new Generator(9));
        layer.AdaptersDisabled = true;
        using var disabled = layer.forward(x);
        using var expected = F.linear(x, q);
        TensorAssert.Close(expected, disabled, 1e-6);
        layer.AdaptersDisabled = false;
        layer.DeleteAdapter("default");
        TensorAssert.Close(q, layer.Weight, 0);
        Assert.False(layer.HoldsResidualBase);
    }
}
