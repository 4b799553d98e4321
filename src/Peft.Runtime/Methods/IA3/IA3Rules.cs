// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>(IA)³'s pure rules, used at compile time (the PEFT0010 budget) and at run time.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class IA3Rules
{
    /// <summary>(IA)³'s trainable parameters on a Linear(in, out): one scale per input feature for a feed-forward layer,
    /// else one per output feature.</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="feedForward">Whether the layer scales its input.</param>
    /// <returns>The count.</returns>
    public static long ParameterCount(long inFeatures, long outFeatures, bool feedForward) => feedForward ? inFeatures : outFeatures;
}
