namespace Peft.Training;

/// <summary>Learning-rate schedules used by <see cref="AdapterTrainer"/>.</summary>
public static class LearningRateSchedule
{
    /// <summary>
    /// Linear warmup followed by cosine decay to a floor. Steps count from 0; <c>W</c> = <paramref name="warmupSteps"/>,
    /// <c>T</c> = <paramref name="totalSteps"/>, <c>floor</c> = <paramref name="peak"/> * <paramref name="minRatio"/>.
    /// </summary>
    /// <remarks>
    /// <para>Let <c>s = min(step, T - 1)</c> (the schedule is clamped after its last step: every later step gets the
    /// last step's value).</para>
    /// <list type="bullet">
    /// <item><description>Warmup, <c>s &lt; W</c>: <c>lr = peak * (s + 1) / W</c>. The first step already gets
    /// <c>peak / W</c> (never 0) and step <c>W - 1</c> gets exactly <c>peak</c>.</description></item>
    /// <item><description>Cosine, <c>s &gt;= W</c>: with the anchor <c>a = max(W - 1, 0)</c> (the step at which
    /// <c>peak</c> is reached) and <c>p = (s - a) / (T - 1 - a)</c>,
    /// <c>lr = floor + (peak - floor) * (1 + cos(pi * p)) / 2</c>. So <c>lr</c> decreases from <c>peak</c> right
    /// after warmup (no plateau) to exactly <c>floor</c> at the last step <c>T - 1</c>. With <c>W</c> = 0 (or 1) the
    /// first step is at <c>peak</c>.</description></item>
    /// <item><description>When no step is left for the decay (<c>T - 1 &lt;= a</c>, e.g. <c>T</c> = 1 or
    /// <c>W = T</c>) every step after warmup gets <c>peak</c>.</description></item>
    /// </list>
    /// <para>Example: <c>W</c> = 10, <c>T</c> = 110, <c>peak</c> = 1e-3, <c>minRatio</c> = 0.1 gives 1e-4 at step 0,
    /// 1e-3 at step 9, 5.5e-4 at step 59 and 1e-4 at step 109 and beyond.</para>
    /// </remarks>
    /// <param name="step">0-based step index (&gt;= 0).</param>
    /// <param name="warmupSteps">Number of warmup steps, 0 to <paramref name="totalSteps"/>.</param>
    /// <param name="totalSteps">Number of steps in the schedule (&gt; 0).</param>
    /// <param name="peak">Peak learning rate (finite, &gt;= 0).</param>
    /// <param name="minRatio">Floor as a fraction of <paramref name="peak"/>, in [0, 1].</param>
    /// <returns>The learning rate for <paramref name="step"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is outside the range given above.</exception>
    public static double WarmupCosine(int step, int warmupSteps, int totalSteps, double peak, double minRatio)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(totalSteps);
        ArgumentOutOfRangeException.ThrowIfNegative(warmupSteps);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(warmupSteps, totalSteps);
        if (!double.IsFinite(peak) || peak < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(peak), peak, "The peak learning rate must be a finite number >= 0.");
        }

        if (!(minRatio >= 0 && minRatio <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(minRatio), minRatio, "The minimum learning-rate ratio must be in [0, 1].");
        }

        int s = Math.Min(step, totalSteps - 1);
        if (s < warmupSteps)
        {
            return peak * (s + 1) / warmupSteps;
        }

        int anchor = Math.Max(warmupSteps - 1, 0);
        int span = totalSteps - 1 - anchor;
        if (span <= 0)
        {
            return peak;
        }

        double progress = (double)(s - anchor) / span;
        double floor = peak * minRatio;
        return floor + ((peak - floor) * 0.5 * (1.0 + Math.Cos(Math.PI * progress)));
    }
}
