// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>LayerNorm tuning's pure rules, used at compile time (the PEFT0010 budget) and at run time.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class LNTuningRules
{
    /// <summary>LayerNorm tuning's trainable parameters on a norm over <paramref name="normalizedSize"/> elements: a copy of
    /// its weight, and of its bias when it has one.</summary>
    /// <param name="normalizedSize">The number of normalised elements.</param>
    /// <param name="hasBias">Whether the norm has a bias.</param>
    /// <returns>The count.</returns>
    public static long ParameterCount(long normalizedSize, bool hasBias) => hasBias ? normalizedSize * 2 : normalizedSize;
}
