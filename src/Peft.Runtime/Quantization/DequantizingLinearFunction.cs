using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// <c>y = x Wᵀ + b</c> with a quantized frozen <c>W</c> (<see cref="QuantizedWeight"/>), as one autograd node that keeps no
/// dense copy of the weight: the forward dequantizes, multiplies and drops the dense weight; the backward dequantizes again
/// for <c>dx = g W</c> (QLoRA's and bitsandbytes' trade: a second dequantization per step instead of an <c>out × in</c>
/// float buffer per layer held until the backward). The weight gets no gradient; the bias gets <c>Σₙ g</c> if it needs one.
/// </summary>
internal sealed class DequantizingLinearFunction : autograd.SingleTensorFunction<DequantizingLinearFunction>
{
    [ThreadStatic]
    private static List<Tensor>? _returned;

    /// <inheritdoc />
    public override string Name => nameof(DequantizingLinearFunction);

    /// <summary>Runs the product; with gradients off (or nothing needing one) it builds no node.</summary>
    /// <param name="x">The input <c>[N, in]</c>.</param>
    /// <param name="weight">The quantized weight.</param>
    /// <param name="bias">The bias <c>[out]</c>, or null.</param>
    /// <returns>The output <c>[N, out]</c>.</returns>
    public static Tensor Apply(Tensor x, QuantizedWeight weight, Tensor? bias)
    {
        bool anyGrad = is_grad_enabled() && (x.requires_grad || (bias?.requires_grad ?? false));
        if (!anyGrad)
        {
            using var noGrad = no_grad();
            return Forward(x, weight, bias);
        }

        return apply(x, bias!, weight);
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var bias = vars[1] as Tensor;
        var weight = (QuantizedWeight)vars[2];
        ctx.save_data("weight", weight);
        ctx.save_data("needs", new[] { x.requires_grad, bias?.requires_grad ?? false });
        return Forward(x, weight, bias);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        if (_returned is { Count: > 0 } previous)
        {
            // TorchSharp copies each returned gradient into the graph after backward returns; the managed handles of the
            // previous call only keep buffers alive until the garbage collector runs.
            foreach (var t in previous)
            {
                t.Dispose();
            }

            previous.Clear();
        }

        using var g = grad_output;
        var weight = (QuantizedWeight)ctx.get_data("weight");
        var needs = (bool[])ctx.get_data("needs");
        var result = new List<Tensor> { null!, null!, null! };
        if (needs[0])
        {
            using var dense = weight.Dequantize();
            using var gw = g.to(dense.dtype);
            result[0] = gw.mm(dense);
        }

        if (needs[1])
        {
            result[1] = g.sum(dim: 0, keepdim: false);
        }

        _returned ??= new List<Tensor>();
        _returned.AddRange(result.Where(t => t is not null));
        return result;
    }

    private static Tensor Forward(Tensor x, QuantizedWeight weight, Tensor? bias)
    {
        using var dense = weight.Dequantize();
        return nn.functional.linear(x, dense, bias);
    }
}
