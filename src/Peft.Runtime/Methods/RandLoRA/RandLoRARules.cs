// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>RandLoRA's pure rules, used both at compile time (the PEFT0010 budget) and at run time (<c>RandLoRAAdapter</c>).</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class RandLoRARules
{
    /// <summary>The number of random bases n = ⌈min(in, out) / r⌉ that makes the update full rank (PEFT's <c>num_bases</c>).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The base rank r (positive).</param>
    /// <returns>n (at least 1).</returns>
    public static long BaseCount(long inFeatures, long outFeatures, long rank)
    {
        long minDim = System.Math.Min(inFeatures, outFeatures);
        return (minDim + rank - 1) / rank;
    }

    /// <summary>RandLoRA's trainable parameters on a Linear(in, out): r·n (<c>randlora_lambda</c> <c>[r, n]</c>) + n·min(in, out)
    /// (<c>randlora_gamma</c> <c>[n, min]</c>); the shared random bases are frozen and not counted.</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The base rank r (positive).</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(long inFeatures, long outFeatures, long rank)
    {
        long n = BaseCount(inFeatures, outFeatures, rank);
        long minDim = System.Math.Min(inFeatures, outFeatures);
        return SaturatingMath.Add(SaturatingMath.Multiply(rank, n), SaturatingMath.Multiply(n, minDim));
    }

    /// <summary>The bound of PEFT's RandLoRA draw, <c>kaiming_uniform_(a=√5)</c>: gain √(2 / (1 + a²)), std = gain / √fan_in,
    /// bound = √3 · std (≈ 1/√fan_in), computed in the same order as PyTorch.</summary>
    /// <param name="fanIn">The fan-in: min_dim for <c>randlora_A</c> <c>[r, 1, min]</c>, r for each <c>[max, 1, r]</c> slice of
    /// <c>randlora_B</c>.</param>
    /// <returns>The bound.</returns>
    public static double KaimingBound(long fanIn)
    {
        double a = System.Math.Sqrt(5.0);
        double gain = System.Math.Sqrt(2.0 / (1 + (a * a)));
        double std = gain / System.Math.Sqrt(fanIn);
        return System.Math.Sqrt(3.0) * std;
    }
}
