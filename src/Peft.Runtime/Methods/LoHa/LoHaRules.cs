// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>LoHa's pure rules, used both at compile time (the PEFT0010 budget) and at run time (<c>LoHaAdapter</c>).</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class LoHaRules
{
    /// <summary>LoHa's trainable parameters on a Linear(in, out): 2·r·(in + out) (<c>hada_w1_a</c>, <c>hada_w2_a</c> are
    /// <c>[out, r]</c>; <c>hada_w1_b</c>, <c>hada_w2_b</c> are <c>[r, in]</c>).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The rank r.</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(long inFeatures, long outFeatures, long rank)
        => SaturatingMath.Multiply(SaturatingMath.Multiply(2, rank), SaturatingMath.Add(inFeatures, outFeatures));

    /// <summary>The scaling of the Hadamard product: alpha / r (PEFT's LoHa <c>scaling</c>).</summary>
    /// <param name="alpha">alpha.</param>
    /// <param name="rank">r.</param>
    /// <returns>The scaling.</returns>
    public static double Scaling(double alpha, int rank) => alpha / rank;
}
