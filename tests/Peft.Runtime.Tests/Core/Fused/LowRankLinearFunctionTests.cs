using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Core.Fused;

/// <summary>
/// The fused low-rank kernel (<see cref="LowRankLinearFunction"/>) against the formulas written in plain autograd operations:
/// LoRA <c>y = x Wᵀ + b + s·(d(x) Aᵀ) Bᵀ</c> and DoRA <c>y = m / ‖W + sBA‖ ⊙ (x Wᵀ + s·(x Aᵀ) Bᵀ) + b</c> (norm detached),
/// forward and every gradient, in float64.
/// </summary>
public class LowRankLinearFunctionTests
{
    private const double Tolerance = 1e-10;

    private static AdaptedLinear Layer(PeftAdapterOptions options, bool bias = true, bool trainBase = false)
    {
        manual_seed(3);
        var layer = AdaptedLinear.Wrap(nn.Linear(12, 10, hasBias: bias, dtype: ScalarType.Float64), "proj");
        layer.WithAdapter("default", options);
        layer.FusedKernel = true; // per layer: the process-wide switch stays as other test classes expect it
        using (no_grad())
        {
            foreach (var (_, p) in layer.GetAdapter("default").named_parameters())
            {
                p.add_(randn_like(p)); // off the zero init of B, so every gradient is non-trivial
            }
        }

        layer.Weight.requires_grad = trainBase;
        if (layer.Bias is not null)
        {
            layer.Bias.requires_grad = trainBase;
        }

        return layer;
    }

    private static Tensor LoRAReference(AdaptedLinear layer, LoRAAdapter lora, Tensor x, Tensor? mask)
    {
        var dropped = mask is null ? x : x * mask;
        return F.linear(x, layer.Weight, layer.Bias) + lora.Scaling * F.linear(F.linear(dropped, lora.A), lora.B);
    }

    private static Tensor DoRAReference(AdaptedLinear layer, DoRAAdapter dora, Tensor x)
    {
        var combined = layer.Weight + dora.Scaling * dora.B.matmul(dora.A);
        var norm = linalg.vector_norm(combined, 2, new long[] { 1 }, false).detach();
        var y = F.linear(x, combined) * (dora.Magnitude / norm);
        return layer.Bias is null ? y : y + layer.Bias;
    }

    /// <summary>Runs the layer and the reference on the same input and upstream gradient, and compares the outputs and the
    /// gradients of the input and of every parameter that requires one.</summary>
    private static void AssertSameAsReference(AdaptedLinear layer, Func<Tensor, Tensor> reference, long[] shape, long seed = 11)
    {
        manual_seed(seed);
        using var x0 = randn(shape, dtype: ScalarType.Float64);
        using var upstream = randn(shape[..^1].Append(10).ToArray(), dtype: ScalarType.Float64);
        var parameters = layer.parameters().Where(p => p.requires_grad).ToList();

        var x1 = x0.detach().requires_grad_(true);
        manual_seed(seed + 1);
        long nodes = LowRankLinearFunction.Nodes;
        var y1 = layer.call(x1);
        Assert.Equal(layer.FusedKernel == true, LowRankLinearFunction.Nodes > nodes);
        y1.backward(new[] { upstream });
        var grads1 = parameters.Select(p => p.grad!.clone()).ToList();
        foreach (var p in parameters)
        {
            p.grad = null;
        }

        var x2 = x0.detach().requires_grad_(true);
        manual_seed(seed + 1);
        var y2 = reference(x2);
        y2.backward(new[] { upstream });

        TensorAssert.Close(y2, y1, Tolerance);
        TensorAssert.Close(x2.grad!, x1.grad!, Tolerance);
        Assert.NotEmpty(parameters);
        for (int i = 0; i < parameters.Count; i++)
        {
            TensorAssert.Close(parameters[i].grad!, grads1[i], Tolerance);
            parameters[i].grad = null;
        }
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void LoRA_forward_and_gradients_match_the_formula(bool bias, bool trainBase)
    {
        var layer = Layer(new LoRAOptions(Rank: 3, Alpha: 5), bias, trainBase);
        var lora = (LoRAAdapter)layer.GetAdapter("default");
        AssertSameAsReference(layer, x => LoRAReference(layer, lora, x, mask: null), new long[] { 7, 12 });
        AssertSameAsReference(layer, x => LoRAReference(layer, lora, x, mask: null), new long[] { 2, 3, 12 });
    }

    [Fact]
    public void LoRA_dropout_drops_the_adapter_input_only_and_its_gradient_follows_the_same_mask()
    {
        const double p = 0.4;
        var layer = Layer(new LoRAOptions(Rank: 3, Alpha: 5, Dropout: p));
        layer.train();
        var lora = (LoRAAdapter)layer.GetAdapter("default");

        // The kernel draws its mask first, as bernoulli(1 - p) / (1 - p) over the input's shape: same seed, same mask.
        AssertSameAsReference(layer, x =>
        {
            using var mask = empty_like(x).bernoulli_(1 - p).div_(1 - p);
            Assert.True(mask.eq(0).any().item<bool>(), "the test's seed must drop something");
            return LoRAReference(layer, lora, x, mask);
        }, new long[] { 9, 12 });

        layer.eval();
        AssertSameAsReference(layer, x => LoRAReference(layer, lora, x, mask: null), new long[] { 9, 12 });
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DoRA_forward_and_gradients_match_the_formula(bool bias)
    {
        var layer = Layer(new DoRAOptions(Rank: 3, Alpha: 5), bias);
        var dora = (DoRAAdapter)layer.GetAdapter("default");
        AssertSameAsReference(layer, x => DoRAReference(layer, dora, x), new long[] { 7, 12 });
        AssertSameAsReference(layer, x => DoRAReference(layer, dora, x), new long[] { 2, 3, 12 });
    }

    [Fact]
    public void The_default_general_path_computes_the_same_function()
    {
        var layer = Layer(new LoRAOptions(Rank: 3, Alpha: 5));
        var lora = (LoRAAdapter)layer.GetAdapter("default");
        layer.FusedKernel = false;
        AssertSameAsReference(layer, x => LoRAReference(layer, lora, x, mask: null), new long[] { 5, 12 });
        Assert.False(PeftKernels.FusedPaths, "the fused kernel is opt-in");
    }

    [Fact]
    public void Inference_builds_no_node_and_gives_the_same_output()
    {
        var layer = Layer(new LoRAOptions(Rank: 3, Alpha: 5));
        var lora = (LoRAAdapter)layer.GetAdapter("default");
        using var x = randn(6, 12, dtype: ScalarType.Float64);
        using var expected = LoRAReference(layer, lora, x, mask: null);
        using (no_grad())
        {
            long nodes = LowRankLinearFunction.Nodes;
            using var y = layer.call(x);
            Assert.Equal(nodes, LowRankLinearFunction.Nodes);
            Assert.False(y.requires_grad);
            TensorAssert.Close(expected, y, Tolerance);
        }
    }

    [Fact]
    public void A_retained_graph_backpropagates_twice_and_accumulates()
    {
        var layer = Layer(new LoRAOptions(Rank: 3, Alpha: 5));
        var lora = (LoRAAdapter)layer.GetAdapter("default");
        using var x = randn(6, 12, dtype: ScalarType.Float64);
        var y = layer.call(x).sum();
        y.backward(retain_graph: true);
        using var once = lora.A.grad!.clone();
        y.backward();
        TensorAssert.Close(once * 2, lora.A.grad!, Tolerance);
    }
}
