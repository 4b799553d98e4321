// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
using System;

#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>KaSA's pure rules, used both at compile time (PEFT0045, PEFT0046, the PEFT0010 budget) and at run time.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class KaSARules
{
    /// <summary>The default weight β of the singular-value penalty β·Σd² (PEFT's <c>KasaConfig.beta</c>).</summary>
    public const double DefaultBeta = 1e-4;

    /// <summary>The default weight γ of the orthogonality penalty γ(‖BᵀB − I‖_F + ‖AAᵀ − I‖_F) (PEFT's <c>KasaConfig.gamma</c>).</summary>
    public const double DefaultGamma = 1e-3;

    /// <summary>The largest rank KaSA admits on a Linear(in, out): min(in, out) − 1, since the base keeps its
    /// min(in, out) − r largest singular directions and at least one must survive (PEFT refuses r ≥ min(in, out) too).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <returns>The maximum rank.</returns>
    public static long MaxRank(long inFeatures, long outFeatures) => Math.Min(inFeatures, outFeatures) - 1;

    /// <summary>KaSA's trainable parameters on a Linear(in, out) at rank r: r·(in + out) for A and B plus r for the
    /// diagonal d (<c>lora_diag</c>).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The rank r.</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(long inFeatures, long outFeatures, long rank)
        => SaturatingMath.Add(SaturatingMath.Multiply(rank, SaturatingMath.Add(inFeatures, outFeatures)), rank);

    /// <summary>Whether a regulariser weight (β or γ) is valid: finite and ≥ 0 (PEFT: "must be non-negative").</summary>
    /// <param name="value">The weight.</param>
    /// <returns>True when valid.</returns>
    public static bool IsValidCoefficient(double value) => value >= 0 && !double.IsInfinity(value);
}
