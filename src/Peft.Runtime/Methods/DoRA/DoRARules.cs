// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>DoRA's pure rules, used at compile time (the PEFT0010 budget) and at run time.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class DoRARules
{
    /// <summary>DoRA's trainable parameters on a Linear(in, out): LoRA's r·(in + out) plus one magnitude per output row.</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="rank">The rank r.</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(long inFeatures, long outFeatures, long rank)
        => SaturatingMath.Add(LoRARules.ParameterCount(inFeatures, outFeatures, rank), outFeatures);
}
