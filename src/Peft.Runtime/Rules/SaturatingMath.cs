// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN), so the
// compiler's parameter counts and the runtime's use one copy of each rule.
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>Arithmetic on non-negative parameter counts that saturates at <see cref="long.MaxValue"/> instead of overflowing.</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class SaturatingMath
{
    /// <summary><paramref name="a"/> + <paramref name="b"/>, or <see cref="long.MaxValue"/> on overflow (both non-negative).</summary>
    /// <param name="a">A non-negative count.</param>
    /// <param name="b">A non-negative count.</param>
    /// <returns>The sum.</returns>
    public static long Add(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;

    /// <summary><paramref name="a"/> · <paramref name="b"/>, or <see cref="long.MaxValue"/> on overflow (both non-negative).</summary>
    /// <param name="a">A non-negative count.</param>
    /// <param name="b">A non-negative count.</param>
    /// <returns>The product.</returns>
    public static long Multiply(long a, long b) => a == 0 || b == 0 ? 0 : a > long.MaxValue / b ? long.MaxValue : a * b;
}
