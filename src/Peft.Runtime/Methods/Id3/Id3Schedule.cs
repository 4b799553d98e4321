namespace Peft;

/// <summary>
/// ID³'s schedule and importance as pure functions (Agarwal et al., 2024, "Step-by-Step Unmasking for Parameter-Efficient
/// Fine-tuning of Large Language Models"): the unmasked set grows toward the budget <c>B</c> over <c>T_u</c> unmasking
/// steps, <c>|M_k| = ⌈B·k/T_u⌉</c> after the <c>k</c>-th, one every <c>interval</c> training steps from step 1.
/// </summary>
public static class Id3Schedule
{
    /// <summary><c>⌈B·k/T_u⌉</c>: how many entries are unmasked after unmasking step <paramref name="k"/> (0 before the
    /// first, <paramref name="budget"/> from the last on).</summary>
    /// <param name="budget">The budget <c>B</c> (&gt;= 0).</param>
    /// <param name="k">The unmasking step, counted from 1; values past <paramref name="unmaskingSteps"/> count as it.</param>
    /// <param name="unmaskingSteps"><c>T_u</c> (&gt;= 1).</param>
    /// <returns>The target count, exact (integer arithmetic).</returns>
    public static long TargetCount(long budget, int k, int unmaskingSteps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(budget);
        ArgumentOutOfRangeException.ThrowIfLessThan(unmaskingSteps, 1);
        int steps = Math.Clamp(k, 0, unmaskingSteps);
        return (long)(((Int128)budget * steps + unmaskingSteps - 1) / unmaskingSteps);
    }

    /// <summary>Which unmasking step training step <paramref name="trainingStep"/> is: <c>k</c> when
    /// <c>trainingStep = 1 + (k - 1)·interval</c> for some <c>k</c> in 1..<paramref name="unmaskingSteps"/>, else 0.</summary>
    /// <param name="trainingStep">The 1-based training step.</param>
    /// <param name="interval">Training steps between unmasking steps (&gt;= 1).</param>
    /// <param name="unmaskingSteps"><c>T_u</c> (&gt;= 1).</param>
    /// <returns>The unmasking step, or 0 when this training step unmasks nothing.</returns>
    public static int UnmaskingStepAt(int trainingStep, int interval, int unmaskingSteps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(interval, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(unmaskingSteps, 1);
        if (trainingStep < 1 || (trainingStep - 1) % interval != 0)
        {
            return 0;
        }

        int k = ((trainingStep - 1) / interval) + 1;
        return k <= unmaskingSteps ? k : 0;
    }

    /// <summary>The training step of the last unmasking step: <c>1 + (T_u - 1)·interval</c>.</summary>
    /// <param name="interval">Training steps between unmasking steps.</param>
    /// <param name="unmaskingSteps"><c>T_u</c>.</param>
    /// <returns>The 1-based training step.</returns>
    public static long LastUnmaskingStep(int interval, int unmaskingSteps) => 1 + ((long)(unmaskingSteps - 1) * interval);

    /// <summary>Splits <paramref name="count"/> new entries into the exploited (highest importance) and explored (random)
    /// ones: <c>explore = ⌊count·share⌋</c>.</summary>
    /// <param name="count">Entries to unmask (&gt;= 0).</param>
    /// <param name="explorationShare">The random share, in [0, 1].</param>
    /// <returns>The two counts; they add up to <paramref name="count"/>.</returns>
    public static (long Exploit, long Explore) Split(long count, double explorationShare)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (!(explorationShare >= 0 && explorationShare <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(explorationShare), explorationShare, "The exploration share must be in [0, 1].");
        }

        long explore = (long)Math.Floor(count * explorationShare);
        return (count - explore, explore);
    }

    /// <summary>The D³ importance of one entry, <c>|g| / (|θ| + ε)^γ</c> (see <see cref="Id3Options.Gamma"/> for the exponent).</summary>
    /// <param name="gradient">The entry's gradient <c>g</c>.</param>
    /// <param name="weight">The entry's value <c>θ</c>.</param>
    /// <param name="gamma">The exponent <c>γ</c>.</param>
    /// <param name="epsilon">The term <c>ε</c> keeping the denominator positive.</param>
    /// <returns>The score (&gt;= 0).</returns>
    public static double Importance(double gradient, double weight, double gamma, double epsilon) =>
        Math.Abs(gradient) / Math.Pow(Math.Abs(weight) + epsilon, gamma);
}
