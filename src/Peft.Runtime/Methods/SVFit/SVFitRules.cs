// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>SVFit's pure rules, used both at compile time (the analyzers, the PEFT0010 budget) and at run time
/// (<c>SVFitAdapter</c>).</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class SVFitRules
{
    /// <summary>The default energy threshold: the rank keeps at least 99% of Σσ² (the catalogue's reading of the paper's
    /// "information").</summary>
    public const double DefaultEnergyThreshold = 0.99;

    /// <summary>SVFit's trainable parameters on a Linear(in, out) at rank r: the r singular values (the singular vectors are
    /// frozen).</summary>
    /// <param name="rank">The rank r.</param>
    /// <returns>The count.</returns>
    public static long ParameterCount(long rank) => rank;

    /// <summary>Whether an energy threshold is in (0, 1].</summary>
    /// <param name="threshold">The threshold.</param>
    /// <returns>True when valid.</returns>
    public static bool IsValidThreshold(double threshold) => threshold > 0 && threshold <= 1;

    /// <summary>
    /// The smallest rank r whose top singular values hold at least <paramref name="threshold"/> of the energy:
    /// <c>Σ_{i&lt;r} σ_i² ≥ threshold · Σ σ_i²</c> (at least 1: a zero weight has no energy and gets rank 1).
    /// </summary>
    /// <param name="singularValues">The singular values, in descending order.</param>
    /// <param name="threshold">The fraction, in (0, 1].</param>
    /// <returns>The rank, in [1, count] (0 for an empty spectrum).</returns>
    public static int EnergyRank(System.Collections.Generic.IReadOnlyList<double> singularValues, double threshold)
    {
        if (singularValues.Count == 0) return 0;
        double total = 0;
        foreach (var s in singularValues) total += s * s;
        if (!(total > 0)) return 1;
        double target = threshold * total;
        double sum = 0;
        for (int i = 0; i < singularValues.Count; i++)
        {
            sum += singularValues[i] * singularValues[i];
            // A relative slack of 1e-12 so that a threshold of exactly 1 (or a spectrum summed in another order) is reached.
            if (sum >= target * (1 - 1e-12)) return i + 1;
        }

        return singularValues.Count;
    }
}
