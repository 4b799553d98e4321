// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
using System;

#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>EVA's rank rule, used at compile time (PEFT0043) and by <c>InitializeEva</c>.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class EvaRules
{
    /// <summary>PEFT's default rho (EvaConfig.rho).</summary>
    public const double DefaultRho = 2.0;

    /// <summary>The largest rank a layer declared with rank <paramref name="rank"/> may receive, and the number of components
    /// its PCA keeps: <c>round(r · rho)</c> with Python's rounding (half to even), as PEFT computes it.</summary>
    /// <param name="rank">The declared rank r.</param>
    /// <param name="rho">EVA's rho.</param>
    /// <returns>round(r · rho).</returns>
    public static int MaxComponents(int rank, double rho) => (int)Math.Round(rank * rho, MidpointRounding.ToEven);

    /// <summary><see cref="MaxComponents"/> with the default rho 2: 2r.</summary>
    /// <param name="rank">The declared rank r.</param>
    /// <returns>round(2r).</returns>
    public static int DefaultMaxComponents(int rank) => MaxComponents(rank, DefaultRho);
}
