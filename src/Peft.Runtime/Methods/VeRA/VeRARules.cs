// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>VeRA's pure rules, used both at compile time (the PEFT0010 budget) and at run time (<c>VeRAAdapter</c>).</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class VeRARules
{
    /// <summary>VeRA's trainable parameters on a Linear(in, out): r + out (<c>vera_lambda_d</c> <c>[r]</c> and
    /// <c>vera_lambda_b</c> <c>[out]</c>); the shared projections are frozen and not counted.</summary>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The rank r.</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(long outFeatures, long rank) => SaturatingMath.Add(rank, outFeatures);

    /// <summary>The bound of PEFT's VeRA kaiming-uniform draw: gain √2, std = gain / √fan_in, bound = √3 · std = √(6 / fan_in).</summary>
    /// <param name="fanIn">The fan-in: the second dimension (in_max for <c>vera_A</c> <c>[r, in_max]</c>, r for <c>vera_B</c>
    /// <c>[out_max, r]</c>).</param>
    /// <returns>The bound.</returns>
    public static double KaimingBound(long fanIn) => System.Math.Sqrt(3.0) * (System.Math.Sqrt(2.0) / System.Math.Sqrt(fanIn));
}
