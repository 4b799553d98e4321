using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// CorDA's math (Yang et al., 2024, "Context-Oriented Decomposition Adaptation"; PEFT's <c>lora/corda.py</c> and
/// <c>LoraLayer.corda_init</c>), in PEFT's order: each calibration forward call's layer input <c>X</c> (rows) is divided by
/// <c>|max(X)|</c> and contributes <c>XᵀX</c>; the covariance <c>C</c> is their sum over the number of calls. <c>C</c> is damped
/// by <c>λ·mean(diag C)·I</c> with λ = 0.01, doubled until <c>‖C̃ C̃⁻¹ − I‖_F &lt; 0.05</c>; then <c>U S Vᴴ = svd(W C̃)</c> and
/// <c>V = (Vᴴ C̃⁻¹)ᵀ</c>, so <c>U diag(S) Vᵀ = W</c> exactly. IPM keeps the r largest components, KPM the r smallest; with the
/// singular values over the scaling s, <c>A = diag(√(S_r/s)) V_rᵀ</c> <c>[r, in]</c> and <c>B = U_r diag(√(S_r/s))</c>
/// <c>[out, r]</c>, and the base keeps <c>W − s·B A</c>.
/// </summary>
public static class CorDAInitialization
{
    /// <summary>PEFT's first damping factor.</summary>
    public const double FirstDamp = 0.01;

    /// <summary>PEFT's bound on <c>‖C̃ C̃⁻¹ − I‖_F</c>.</summary>
    public const double InverseErrorBound = 0.05;

    /// <summary>Doublings of the damping factor before the covariance is refused (λ = 0.01·2⁴⁰ is far past any useful value;
    /// PEFT loops without bound).</summary>
    public const int MaxDoublings = 40;

    /// <summary>PEFT's <c>corda_method</c> value: <c>"ipm"</c> or <c>"kpm"</c>.</summary>
    /// <param name="method">The mode.</param>
    /// <returns>The value.</returns>
    public static string PeftName(CorDAMethod method) => method == CorDAMethod.Kpm ? "kpm" : "ipm";

    /// <summary>One calibration call's contribution, as PEFT's forward hook computes it: the rows in float32 (float16 with
    /// <paramref name="useFloat16"/>, float64 for float64 inputs), divided by <c>|max(X)|</c> (the largest value, then its
    /// magnitude, as PEFT does), then <c>XᵀX</c>.</summary>
    /// <param name="rows">The layer input rows <c>[rows, in]</c>.</param>
    /// <param name="useFloat16">PEFT's <c>use_float16_for_covariance</c>.</param>
    /// <param name="layer">The layer's path, for messages.</param>
    /// <returns><c>XᵀX</c> <c>[in, in]</c>; the caller disposes it.</returns>
    /// <exception cref="InvalidOperationException">The scaled input or its product holds NaN or infinite values (an all-zero
    /// call, or overflow).</exception>
    public static Tensor CallCovariance(Tensor rows, bool useFloat16, string layer)
    {
        ArgumentNullException.ThrowIfNull(rows);
        using var scope = NewDisposeScope();
        var dtype = useFloat16 ? ScalarType.Float16 : rows.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var x = rows.to(dtype);
        x = x / x.max().abs();
        if (!isfinite(x).all().item<bool>())
        {
            throw new InvalidOperationException(
                $"CorDA calibration: layer '{layer}' got an input whose largest value is 0 or that holds NaN or infinite values (PEFT divides each call's input by |max(X)|); check the calibration batches.");
        }

        var product = x.t().matmul(x);
        if (!isfinite(product).all().item<bool>())
        {
            throw new InvalidOperationException(
                $"CorDA calibration: layer '{layer}''s covariance overflowed{(useFloat16 ? " in float16; leave UseFloat16ForCovariance off" : string.Empty)}.");
        }

        return product.MoveToOuterDisposeScope();
    }

    /// <summary>The damped covariance <c>C̃ = C + λ·mean(diag C)·I</c> and its inverse, with PEFT's λ schedule (0.01, doubled
    /// until <c>‖C̃ C̃⁻¹ − I‖_F &lt; 0.05</c>).</summary>
    /// <param name="covariance">The covariance <c>[in, in]</c> (float32, or float64).</param>
    /// <param name="layer">The layer's path, for messages.</param>
    /// <returns><c>C̃</c>, <c>C̃⁻¹</c> and the λ used; the caller disposes the tensors.</returns>
    /// <exception cref="InvalidOperationException">The covariance is zero, not finite, or no λ up to 0.01·2⁴⁰ makes it invertible.</exception>
    public static (Tensor Damped, Tensor Inverse, double Damp) DampedInverse(Tensor covariance, string layer)
    {
        ArgumentNullException.ThrowIfNull(covariance);
        using var scope = NewDisposeScope();
        long n = covariance.shape[0];
        double meanDiagonal = covariance.diagonal().mean().to(ScalarType.Float64).item<double>();
        if (!(meanDiagonal > 0) || double.IsInfinity(meanDiagonal) || !isfinite(covariance).all().item<bool>())
        {
            throw new InvalidOperationException(
                $"CorDA: the input covariance of layer '{layer}' has mean diagonal {meanDiagonal}; it must be positive and finite (did the calibration batches reach the layer, with non-zero inputs?).");
        }

        var identity = eye(n, dtype: covariance.dtype, device: covariance.device);
        double damp = FirstDamp;
        for (int doubling = 0; doubling <= MaxDoublings; doubling++, damp *= 2)
        {
            var damped = covariance + identity * (meanDiagonal * damp);
            Tensor inverse;
            try
            {
                inverse = linalg.inv(damped);
            }
            catch (ExternalException)
            {
                continue;
            }

            double error = (damped.matmul(inverse) - identity).square().sum().sqrt().to(ScalarType.Float64).item<double>();
            if (error < InverseErrorBound)
            {
                return (damped.MoveToOuterDisposeScope(), inverse.MoveToOuterDisposeScope(), damp);
            }
        }

        throw new InvalidOperationException(
            $"CorDA: the input covariance of layer '{layer}' stays ill-conditioned after {MaxDoublings} doublings of its damping; use more (or more varied) calibration data.");
    }

    /// <summary>The decomposition of one layer (PEFT's <c>collect_eigens_for_layer</c> and <c>crop_corda_eigens</c>): the r
    /// components of <c>W C̃</c> that <paramref name="method"/> keeps.</summary>
    /// <param name="weight">The base weight <c>[out, in]</c> (computed in float32, or float64 for a float64 weight).</param>
    /// <param name="covariance">The input covariance <c>[in, in]</c>.</param>
    /// <param name="rank">The rank r.</param>
    /// <param name="method">IPM (largest) or KPM (smallest).</param>
    /// <param name="layer">The layer's path, for messages.</param>
    /// <returns>The cropped <c>S</c>, <c>U</c>, <c>V</c>; the caller disposes them.</returns>
    public static CorDAEigens Eigens(Tensor weight, Tensor covariance, int rank, CorDAMethod method, string layer)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(covariance);
        using var scope = NewDisposeScope();
        var compute = weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        if (covariance.Dimensions != 2 || covariance.shape[0] != weight.shape[1] || covariance.shape[1] != weight.shape[1])
        {
            throw new InvalidOperationException(
                $"CorDA: the covariance of layer '{layer}' is [{string.Join(", ", covariance.shape)}], but the layer's input size is {weight.shape[1]}.");
        }

        long minDim = Math.Min(weight.shape[0], weight.shape[1]);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rank, minDim);
        var (damped, inverse, _) = DampedInverse(covariance.to(compute), layer);
        var w = weight.to(compute).matmul(damped);
        var (u, s, vh) = linalg.svd(w, fullMatrices: false);
        var v = vh.matmul(inverse).t();
        long start = method == CorDAMethod.Kpm ? minDim - rank : 0;
        var eigens = new CorDAEigens(
            s.narrow(0, start, rank).contiguous().MoveToOuterDisposeScope(),
            u.narrow(1, start, rank).contiguous().MoveToOuterDisposeScope(),
            v.narrow(1, start, rank).contiguous().MoveToOuterDisposeScope());
        return eigens;
    }

    /// <summary>A and B from a layer's decomposition (PEFT's <c>corda_init</c>): <c>S ← S/s</c>, <c>A = Vᵀ·√S</c> (row i times
    /// √S_i), <c>B = U·√S</c>.</summary>
    /// <param name="eigens">The cropped decomposition.</param>
    /// <param name="scaling">The LoRA scaling s.</param>
    /// <returns>(A <c>[r, in]</c>, B <c>[out, r]</c>); the caller disposes them.</returns>
    public static (Tensor A, Tensor B) Factors(CorDAEigens eigens, double scaling)
    {
        ArgumentNullException.ThrowIfNull(eigens);
        using var scope = NewDisposeScope();
        if (!isfinite(eigens.S).all().item<bool>() || !isfinite(eigens.U).all().item<bool>() || !isfinite(eigens.V).all().item<bool>())
        {
            throw new InvalidOperationException("CorDA: the decomposition holds NaN or infinite values.");
        }

        var root = eigens.S.div(scaling).sqrt();
        var a = (eigens.V.t() * root.unsqueeze(1)).contiguous();
        var b = (eigens.U * root.unsqueeze(0)).contiguous();
        return (a.MoveToOuterDisposeScope(), b.MoveToOuterDisposeScope());
    }
}

/// <summary>One layer's CorDA decomposition, cropped to the adapter's rank (PEFT's <c>CordaEigens</c>: <c>S_WC</c>,
/// <c>U_WC</c>, <c>V_WC</c>).</summary>
/// <param name="S">The kept singular values <c>[r]</c>.</param>
/// <param name="U">The kept left singular vectors <c>[out, r]</c>.</param>
/// <param name="V">The kept right vectors times the inverse covariance <c>[in, r]</c>.</param>
public sealed record CorDAEigens(Tensor S, Tensor U, Tensor V) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        S.Dispose();
        U.Dispose();
        V.Dispose();
    }
}
