using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// OLoRA's factors (Büyükakyüz, 2024; PEFT's <c>olora_init</c>): the reduced QR decomposition <c>W = Q R</c> of the weight
/// <c>[out, in]</c>, <c>B = Q[:, :r]</c> <c>[out, r]</c> (orthonormal columns) and <c>A = R[:r]</c> <c>[r, in]</c>; the residual is
/// <c>W − s·B A</c> (no division by s, as PEFT: the adapter's initial update is s times the first r rows' part of W).
/// </summary>
public static class OloraInitialization
{
    /// <summary>Computes A and B from a weight <c>[out, in]</c> in <paramref name="weight"/>'s dtype.</summary>
    /// <param name="weight">The base weight <c>[out, in]</c>.</param>
    /// <param name="rank">The rank r.</param>
    /// <returns>(A, B); the caller disposes them.</returns>
    public static (Tensor A, Tensor B) Factors(Tensor weight, int rank)
    {
        ArgumentNullException.ThrowIfNull(weight);
        using var scope = NewDisposeScope();
        var (q, r) = linalg.qr(weight);
        var a = r.narrow(0, 0, rank).contiguous();
        var b = q.narrow(1, 0, rank).contiguous();
        return (a.MoveToOuterDisposeScope(), b.MoveToOuterDisposeScope());
    }
}
