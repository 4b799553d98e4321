using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// PiSSA's factors (Meng et al., 2024; PEFT's <c>pissa_init</c>): from <c>W = U S Vᵀ</c> (the full SVD, or
/// <see cref="RandomizedSvd"/> with K power iterations for <c>"pissa_niter_K"</c>), <c>S_r = S[:r] / s</c>,
/// <c>A = diag(√S_r) V_rᵀ</c> <c>[r, in]</c> and <c>B = U_r diag(√S_r)</c> <c>[out, r]</c>, so that <c>s·B A</c> is the
/// best rank-r approximation of <c>W</c> and the residual <c>W − s·B A</c> holds the minor components.
/// </summary>
public static class PissaInitialization
{
    /// <summary>Computes A and B from a weight <c>[out, in]</c> in <paramref name="weight"/>'s dtype (the caller passes it in
    /// float32, or float64 for a float64 layer).</summary>
    /// <param name="weight">The base weight <c>[out, in]</c>.</param>
    /// <param name="rank">The rank r.</param>
    /// <param name="scaling">The LoRA scaling s.</param>
    /// <param name="iterations">0 for the full SVD; K ≥ 1 for a randomized SVD with K power iterations.</param>
    /// <returns>(A, B); the caller disposes them.</returns>
    public static (Tensor A, Tensor B) Factors(Tensor weight, int rank, double scaling, int iterations)
    {
        ArgumentNullException.ThrowIfNull(weight);
        using var scope = NewDisposeScope();
        Tensor ur, sr, vr;
        if (iterations == 0)
        {
            var (u, s, vh) = linalg.svd(weight, fullMatrices: false);
            ur = u.narrow(1, 0, rank);
            sr = s.narrow(0, 0, rank);
            vr = vh.narrow(0, 0, rank).t();
        }
        else
        {
            (ur, sr, vr) = RandomizedSvd.Compute(weight, rank, iterations);
        }

        var root = sr.div(scaling).sqrt();                                  // √(S_r / s)
        var a = (vr.t() * root.unsqueeze(1)).contiguous();                  // diag(√S_r) V_rᵀ  [r, in]
        var b = (ur * root.unsqueeze(0)).contiguous();                      // U_r diag(√S_r)   [out, r]
        return (a.MoveToOuterDisposeScope(), b.MoveToOuterDisposeScope());
    }
}
