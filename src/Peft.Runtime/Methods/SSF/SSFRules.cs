// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>SSF's pure rules, used at compile time (the PEFT0010 budget) and at run time.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class SSFRules
{
    /// <summary>SSF's trainable parameters on a layer: a scale and a shift per output feature (a norm's: per normalised
    /// element).</summary>
    /// <param name="outFeatures">out_features, or the norm's size.</param>
    /// <returns>The count.</returns>
    public static long ParameterCount(long outFeatures) => 2 * outFeatures;
}
