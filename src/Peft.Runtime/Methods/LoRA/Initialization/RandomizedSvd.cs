using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A truncated SVD by randomized range finding (Halko, Martinsson and Tropp, 2011, algorithms 4.4 and 5.1), as PyTorch's
/// <c>torch.svd_lowrank</c> (which TorchSharp lacks) computes it: a Gaussian sketch <c>Y = A Ω</c> (<c>Ω</c> is <c>n × q</c>),
/// <c>Q = qr(Y)</c>, then K power iterations <c>Q = qr(Aᵀ Q)</c>, <c>Q = qr(A Q)</c> (each
/// re-orthonormalised), and the SVD of the small <c>Qᵀ A</c> lifted back by <c>Q</c>. Accurate when the spectrum decays past the
/// first q values; each iteration sharpens it by the ratio of the (q+1)-th to the q-th singular value.
/// </summary>
public static class RandomizedSvd
{
    /// <summary>The seed of the sketch: fixed, so the same weight always gives the same factors (a PiSSA file reloaded onto
    /// the original base derives the same residual).</summary>
    public const long Seed = 0;

    /// <summary>Approximates the top <paramref name="q"/> singular triplets of <paramref name="a"/> <c>[m, n]</c>.</summary>
    /// <param name="a">The matrix (float32 or float64).</param>
    /// <param name="q">The number of triplets (PEFT passes the rank r, without oversampling).</param>
    /// <param name="iterations">The number of power iterations (PEFT's niter), at least 0.</param>
    /// <param name="seed">The seed of the Gaussian sketch (drawn on the CPU, then moved to <paramref name="a"/>'s device).</param>
    /// <returns><c>U [m, q]</c>, <c>S [q]</c> (descending), <c>V [n, q]</c> with <c>A ≈ U diag(S) Vᵀ</c>; the caller disposes them.</returns>
    public static (Tensor U, Tensor S, Tensor V) Compute(Tensor a, int q, int iterations, long seed = Seed)
    {
        ArgumentNullException.ThrowIfNull(a);
        if (a.Dimensions != 2) throw new ArgumentException($"A randomized SVD needs a matrix, got {a.Dimensions} dimensions.", nameof(a));
        long m = a.shape[0], n = a.shape[1];
        if (q < 1 || q > Math.Min(m, n)) throw new ArgumentOutOfRangeException(nameof(q), q, $"q must be in [1, min({m}, {n})].");
        ArgumentOutOfRangeException.ThrowIfNegative(iterations);
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)seed);
        var omega = randn(new[] { n, (long)q }, dtype: a.dtype, device: CPU, generator: generator).to(a.device);
        var (qBasis, _) = linalg.qr(a.matmul(omega));
        var at = a.t();
        for (int i = 0; i < iterations; i++)
        {
            (qBasis, _) = linalg.qr(at.matmul(qBasis));
            (qBasis, _) = linalg.qr(a.matmul(qBasis));
        }

        var small = qBasis.t().matmul(a);                         // [q, n]
        var (uSmall, s, vh) = linalg.svd(small, fullMatrices: false);
        var u = qBasis.matmul(uSmall);
        var v = vh.t().contiguous();
        return (u.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }
}
