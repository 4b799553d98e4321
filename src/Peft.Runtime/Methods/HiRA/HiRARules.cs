// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
using System;

#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>HiRA's pure rules, used both at compile time (PEFT0004, the PEFT0010 budget) and at run time (<c>HiRAOptions</c>).</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class HiRARules
{
    /// <summary>PEFT's default <c>r</c> for <c>HiraConfig</c>.</summary>
    public const int DefaultRank = 32;

    /// <summary>HiRA's trainable parameters on a Linear(in, out): r·(in + out) (<c>hira_A</c> is <c>[r, in]</c>, <c>hira_B</c>
    /// is <c>[out, r]</c>).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The rank r.</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(long inFeatures, long outFeatures, long rank)
        => SaturatingMath.Multiply(rank, SaturatingMath.Add(inFeatures, outFeatures));

    /// <summary>The largest useful rank, min(in, out): the factor <c>B A</c> can already be any <c>[out, in]</c> matrix at that
    /// rank, so a larger r adds parameters and no expressiveness (as for LoRA).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <returns>The maximum rank.</returns>
    public static long MaxRank(long inFeatures, long outFeatures) => Math.Min(inFeatures, outFeatures);
}
