using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// LoftQ (Li et al., 2023; PEFT's <c>init_lora_weights="loftq"</c> with <c>loftq_config</c>): quantization and a low-rank
/// correction fitted together, so that <c>W ≈ Q + s·B A</c> on a quantized base. Starting from <c>R = W</c>, each of the T
/// iterations quantizes <c>Q = dequant(quant(R))</c>, takes the top-r SVD <c>U S Vᵀ</c> of the error <c>W − Q</c> and sets
/// <c>A = diag(√(S_r/s)) V_rᵀ</c>, <c>B = U_r diag(√(S_r/s))</c> (so <c>s·B A</c> is its best rank-r approximation), then
/// <c>R = W − s·B A</c>, in PEFT's order (<c>peft.utils.loftq_utils.loftq_init</c>); the base becomes the last <c>Q</c>.
/// </summary>
/// <remarks>
/// Two deliberate differences from PEFT, both documented in docs/methods.md: the quantizer is this library's own
/// (<see cref="QuantizedWeight"/>: NF4 with double-quantized absmaxes for 4 bits, per-row int8 for 8 bits), so the base can be
/// stored as exactly the <c>Q</c> the adapter complements (<see cref="AdaptedLinear.QuantizeBase"/> takes these codes); PEFT uses
/// bitsandbytes' NF4 without double quantization, or its own normal-float map (also for 8 and 2 bits). And the singular values
/// are divided by the scaling s as PEFT's PiSSA does, so the layer starts at <c>Q + s·BA ≈ W</c> for any lora_alpha; PEFT's
/// LoftQ ignores s (its factors fit <c>Q + BA ≈ W</c>), which is the same factors when s = 1 (lora_alpha = r).
/// </remarks>
public static class LoftQInitialization
{
    /// <summary>The storage format of <paramref name="bits"/>: 4 is <see cref="QuantizationFormat.NF4"/>, 8 is
    /// <see cref="QuantizationFormat.Int8"/>.</summary>
    /// <param name="bits">PEFT's <c>loftq_bits</c> (4 or 8).</param>
    /// <returns>The format.</returns>
    /// <exception cref="ArgumentOutOfRangeException">Any other number of bits.</exception>
    public static QuantizationFormat FormatFor(int bits) => bits switch
    {
        4 => QuantizationFormat.NF4,
        8 => QuantizationFormat.Int8,
        _ => throw new ArgumentOutOfRangeException(nameof(bits), bits, "LoftQ quantizes to 4 (NF4) or 8 (int8) bits here."),
    };

    /// <summary>Runs the LoftQ iterations on a weight <c>[out, in]</c> (float32, or float64 for a float64 layer).</summary>
    /// <param name="weight">The original weight <c>[out, in]</c>.</param>
    /// <param name="rank">The rank r.</param>
    /// <param name="scaling">The LoRA scaling s.</param>
    /// <param name="format">The quantization format.</param>
    /// <param name="iterations">The number T ≥ 1 of alternations (PEFT's <c>loftq_iter</c>).</param>
    /// <returns>A <c>[r, in]</c>, B <c>[out, r]</c>, the dense <c>Q</c> in <paramref name="weight"/>'s dtype, and the quantized
    /// <c>Q</c> (its buffers); the caller disposes them.</returns>
    public static (Tensor A, Tensor B, Tensor Q, QuantizedWeight Quantized) Run(Tensor weight, int rank, double scaling, QuantizationFormat format, int iterations)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        using var scope = NewDisposeScope();
        var residual = weight;
        QuantizedWeight? quantized = null;
        Tensor? a = null, b = null, q = null;
        for (int i = 0; i < iterations; i++)
        {
            if (quantized is not null)
            {
                foreach (var buffer in quantized.Buffers.Values) buffer.Dispose();
            }

            quantized = QuantizedWeight.Quantize(residual, format);
            q = quantized.Dequantize().to(weight.dtype);
            var error = weight - q;
            var (u, s, vh) = linalg.svd(error, fullMatrices: false);
            var root = s.narrow(0, 0, rank).div(scaling).sqrt();                 // √(S_r / s)
            a = (vh.narrow(0, 0, rank) * root.unsqueeze(1)).contiguous();         // diag(√S_r) V_rᵀ  [r, in]
            b = (u.narrow(1, 0, rank) * root.unsqueeze(0)).contiguous();          // U_r diag(√S_r)   [out, r]
            residual = weight - b.matmul(a).mul_(scaling);
        }

        foreach (var buffer in quantized!.Buffers.Values) buffer.MoveToOuterDisposeScope();
        return (a!.MoveToOuterDisposeScope(), b!.MoveToOuterDisposeScope(), q!.MoveToOuterDisposeScope(), quantized);
    }

    /// <summary>The approximation error <c>‖W − (Q + s·B A)‖_F</c> of a LoftQ (or plain quantization, with B A = 0) start.</summary>
    /// <param name="weight">The original weight.</param>
    /// <param name="q">The (dequantized) base.</param>
    /// <param name="a">A <c>[r, in]</c>.</param>
    /// <param name="b">B <c>[out, r]</c>.</param>
    /// <param name="scaling">The scaling s.</param>
    /// <returns>The Frobenius norm.</returns>
    public static double Error(Tensor weight, Tensor q, Tensor a, Tensor b, double scaling)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        using var scope = NewDisposeScope();
        var w = weight.to(ScalarType.Float64);
        var approx = q.to(ScalarType.Float64) + b.to(ScalarType.Float64).matmul(a.to(ScalarType.Float64)).mul_(scaling);
        return (w - approx).square().sum().sqrt().item<double>();
    }
}
