// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
using System;

#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>
/// Hugging Face PEFT's LoKr shape rules, used both at compile time (PEFT0005, the PEFT0010 budget) and at run time
/// (<c>KroneckerAdapter</c>), so the two never disagree.
/// </summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class KroneckerRules
{
    /// <summary>
    /// Splits <paramref name="dimension"/> into two factors, smaller first, exactly as PEFT's
    /// <c>factorization(dimension, factor)</c>: when <paramref name="factor"/> is positive and divides the dimension the
    /// pair is (factor, dimension / factor); otherwise the divisor pair closest to the square root whose first factor
    /// does not exceed <paramref name="factor"/> (no limit when negative).
    /// </summary>
    /// <param name="dimension">The size to split (positive).</param>
    /// <param name="factor">The requested first factor, or -1 for automatic.</param>
    /// <returns>The factors (Small ≤ Large, Small · Large = dimension).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dimension"/> is not positive.</exception>
    /// <example>128 → (8, 16); 768 → (24, 32); 100 → (10, 10); 7 → (1, 7); 64 with factor 4 → (4, 16).</example>
    public static (int Small, int Large) Factorize(int dimension, int factor = -1)
    {
        if (dimension <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(dimension), dimension, "The dimension to factorize must be positive.");
        }

        int m, n;
        if (factor > 0 && dimension % factor == 0)
        {
            m = factor;
            n = dimension / factor;
            return m > n ? (n, m) : (m, n);
        }

        if (factor < 0)
        {
            factor = dimension;
        }

        m = 1;
        n = dimension;
        int length = m + n;
        while (m < n)
        {
            int newM = m + 1;
            while (dimension % newM != 0)
            {
                newM++;
            }

            int newN = dimension / newM;
            if (newM + newN > length || newM > factor)
            {
                break;
            }

            m = newM;
            n = newN;
        }

        return m > n ? (n, m) : (m, n);
    }

    /// <summary>PEFT's rule for W1: full <c>[l, m]</c> unless <c>decompose_both</c> and r &lt; max(l, m) / 2.</summary>
    /// <param name="rank">r.</param>
    /// <param name="outL">The first output factor l.</param>
    /// <param name="inM">The first input factor m.</param>
    /// <param name="decomposeBoth">decompose_both.</param>
    /// <returns>True when W1 is one full parameter.</returns>
    public static bool UsesFullW1(int rank, long outL, long inM, bool decomposeBoth) => !(decomposeBoth && rank < Math.Max(outL, inM) / 2.0);

    /// <summary>PEFT's rule for W2: full <c>[k, n]</c> unless r &lt; max(k, n) / 2.</summary>
    /// <param name="rank">r.</param>
    /// <param name="outK">The second output factor k.</param>
    /// <param name="inN">The second input factor n.</param>
    /// <returns>True when W2 is one full parameter.</returns>
    public static bool UsesFullW2(int rank, long outK, long inN) => !(rank < Math.Max(outK, inN) / 2.0);

    /// <summary>
    /// The smallest r at which PEFT keeps both Kronecker factors full on a Linear(in, out) (DiffuseKronA: <c>ΔW = s · A ⊗ B</c> with
    /// two full factors): r ≥ half of every factor side, so neither <see cref="UsesFullW1"/> nor <see cref="UsesFullW2"/> decomposes.
    /// </summary>
    /// <param name="inFeatures">in_features (positive, at most int.MaxValue).</param>
    /// <param name="outFeatures">out_features (positive, at most int.MaxValue).</param>
    /// <param name="factor">decompose_factor (-1 automatic; a non-zero value).</param>
    /// <returns>The rank.</returns>
    public static int FullFactorRank(long inFeatures, long outFeatures, int factor)
    {
        var (inM, inN) = Factorize((int)inFeatures, factor);
        var (outL, outK) = Factorize((int)outFeatures, factor);
        int largest = Math.Max(Math.Max(inM, inN), Math.Max(outL, outK));
        return (largest + 1) / 2;
    }

    /// <summary>LoKr's trainable parameters on a Linear(in, out) with PEFT's factorisation and full/low-rank rules.</summary>
    /// <param name="inFeatures">in_features (positive, at most int.MaxValue).</param>
    /// <param name="outFeatures">out_features (positive, at most int.MaxValue).</param>
    /// <param name="rank">r (positive).</param>
    /// <param name="factor">decompose_factor (-1 automatic; a non-zero value).</param>
    /// <param name="decomposeBoth">decompose_both.</param>
    /// <param name="fullFactors">Both factors full whatever r (DiffuseKronA).</param>
    /// <returns>The count, or null when a size is out of range.</returns>
    public static long? ParameterCount(long inFeatures, long outFeatures, int rank, int factor, bool decomposeBoth, bool fullFactors = false)
    {
        if (inFeatures <= 0 || outFeatures <= 0 || inFeatures > int.MaxValue || outFeatures > int.MaxValue || rank <= 0 || factor == 0)
        {
            return null;
        }

        if (fullFactors)
        {
            rank = Math.Max(rank, FullFactorRank(inFeatures, outFeatures, factor));
        }

        var (inM, inN) = Factorize((int)inFeatures, factor);
        var (outL, outK) = Factorize((int)outFeatures, factor);
        long w1 = UsesFullW1(rank, outL, inM, decomposeBoth) ? (long)outL * inM : (long)rank * (outL + inM);
        long w2 = UsesFullW2(rank, outK, inN) ? (long)outK * inN : (long)rank * (outK + inN);
        return SaturatingMath.Add(w1, w2);
    }
}
