// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
using System;

#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>LoRA's pure rules, used both at compile time (PEFT0004, the PEFT0010 budget) and at run time.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class LoRARules
{
    /// <summary>The largest rank a layer admits: min(in, out) (a larger rank cannot add expressiveness and PEFT refuses it at the first forward).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <returns>The maximum rank.</returns>
    public static long MaxRank(long inFeatures, long outFeatures) => Math.Min(inFeatures, outFeatures);

    /// <summary>LoRA's trainable parameters on a Linear(in, out): r·(in + out) (A is [r, in], B is [out, r]).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The rank r.</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(long inFeatures, long outFeatures, long rank)
        => SaturatingMath.Multiply(rank, SaturatingMath.Add(inFeatures, outFeatures));

    /// <summary>The scaling s applied to B·A: alpha / r, or alpha / √r with rsLoRA (PEFT's <c>use_rslora</c>).</summary>
    /// <param name="alpha">lora_alpha.</param>
    /// <param name="rank">r.</param>
    /// <param name="useRsLora">use_rslora.</param>
    /// <returns>The scaling.</returns>
    public static double Scaling(double alpha, int rank, bool useRsLora) => useRsLora ? alpha / Math.Sqrt(rank) : alpha / rank;
}
