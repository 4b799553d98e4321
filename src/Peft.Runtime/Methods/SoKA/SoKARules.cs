// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
using System;
using System.Collections.Generic;

#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>SoKA's pure rules, used both at compile time (PEFT0047, PEFT0048, the PEFT0010 budget) and at run time
/// (<c>SoKAAdapter</c>): the Kronecker shapes, the rank by energy and elbow, the parameter count.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class SoKARules
{
    /// <summary>The default energy threshold τ of the automatic rank (rank 0): the smallest rank holding 90% of Σσ_k² of the
    /// weight's Kronecker-product SVD, unless the elbow of the σ curve comes first (this library's reading of the paper).</summary>
    public const double DefaultEnergyThreshold = 0.9;

    /// <summary>The Kronecker shapes of a Linear(in, out): <c>W [m·p, n·q] ≈ Σ_k U_k ⊗ V_k</c> with <c>U_k [m, n]</c>,
    /// <c>V_k [p, q]</c>; (m, p) and (n, q) split out and in as LoKr does (<c>KroneckerRules.Factorize</c>, the smaller
    /// factor first, at most <paramref name="factor"/> when positive).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="factor">-1 for the factors closest to the square roots, or a positive factor.</param>
    /// <returns>(m, n, p, q).</returns>
    public static (int M, int N, int P, int Q) Shapes(int inFeatures, int outFeatures, int factor)
    {
        var (m, p) = KroneckerRules.Factorize(outFeatures, factor);
        var (n, q) = KroneckerRules.Factorize(inFeatures, factor);
        return (m, n, p, q);
    }

    /// <summary>Whether a factor is valid for a layer: negative (-1: automatic, as LoKr), or positive and dividing both sizes
    /// (so that it is the first factor of both; otherwise LoKr's rule would silently pick another split).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="factor">The factor.</param>
    /// <returns>True when valid.</returns>
    public static bool IsValidFactor(long inFeatures, long outFeatures, int factor)
        => factor < 0 || (factor > 0 && inFeatures % factor == 0 && outFeatures % factor == 0);

    /// <summary>The largest Kronecker rank: min(m·n, p·q), the rank of the rearranged weight <c>R(W)</c>.</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="factor">The factor.</param>
    /// <returns>The maximum rank.</returns>
    public static long MaxRank(int inFeatures, int outFeatures, int factor)
    {
        var (m, n, p, q) = Shapes(inFeatures, outFeatures, factor);
        return Math.Min((long)m * n, (long)p * q);
    }

    /// <summary>SoKA's trainable parameters: r·(m·n + p·q) (the r pairs of Kronecker factors).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The rank r.</param>
    /// <param name="factor">The factor.</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(int inFeatures, int outFeatures, long rank, int factor)
    {
        var (m, n, p, q) = Shapes(inFeatures, outFeatures, factor);
        return SaturatingMath.Multiply(rank, SaturatingMath.Add((long)m * n, (long)p * q));
    }

    /// <summary>Whether an energy threshold is in (0, 1].</summary>
    /// <param name="threshold">The threshold.</param>
    /// <returns>True when valid.</returns>
    public static bool IsValidThreshold(double threshold) => threshold > 0 && threshold <= 1;

    /// <summary>
    /// The elbow of a descending σ curve (the "kneedle" point): with the points normalised to <c>x_i = i/(K−1)</c>,
    /// <c>y_i = (σ_i − σ_min)/(σ_max − σ_min)</c>, the index with the largest distance below the chord from (0, 1) to (1, 0),
    /// <c>(1 − x_i) − y_i</c>; the rank keeps the values up to it, so it is index + 1 (the first of equal distances). A flat
    /// or two-value curve has no elbow and keeps everything (K).
    /// </summary>
    /// <param name="singularValues">σ, descending.</param>
    /// <returns>The rank, in [1, K] (0 for an empty curve).</returns>
    public static int ElbowRank(IReadOnlyList<double> singularValues)
    {
        int count = singularValues.Count;
        if (count <= 2) return count;
        double max = singularValues[0], min = singularValues[count - 1];
        if (!(max - min > 0)) return count;
        int best = -1;
        double bestDistance = 0;
        for (int i = 0; i < count; i++)
        {
            double x = (double)i / (count - 1);
            double y = (singularValues[i] - min) / (max - min);
            double distance = 1 - x - y;
            if (distance > bestDistance * (1 + 1e-12) + 1e-15)
            {
                bestDistance = distance;
                best = i;
            }
        }

        return best < 0 ? count : best + 1;
    }

    /// <summary>The automatic rank: the smaller of the energy rank (smallest r with Σ_{k≤r}σ_k² ≥ τ·Σσ_k²,
    /// <c>SVFitRules.EnergyRank</c>) and the elbow rank (<see cref="ElbowRank"/>), so the elbow caps a long tail the energy
    /// alone would keep; at least 1.</summary>
    /// <param name="singularValues">σ, descending.</param>
    /// <param name="threshold">τ in (0, 1].</param>
    /// <returns>The rank.</returns>
    public static int AutomaticRank(IReadOnlyList<double> singularValues, double threshold)
    {
        if (singularValues.Count == 0) return 0;
        int energy = SVFitRules.EnergyRank(singularValues, threshold);
        int elbow = ElbowRank(singularValues);
        return Math.Max(1, Math.Min(energy, elbow));
    }
}
