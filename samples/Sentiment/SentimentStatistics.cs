namespace Sentiment;

/// <summary>A method's accuracies over several seeds: the mean and a 95% confidence interval for it.</summary>
/// <param name="Mean">The mean accuracy.</param>
/// <param name="StandardDeviation">The sample standard deviation over seeds (0 for one seed).</param>
/// <param name="HalfWidth">Half the width of the 95% interval (t-distribution with n - 1 degrees of freedom); NaN for one seed.</param>
/// <param name="Count">The number of seeds.</param>
public sealed record AccuracyInterval(double Mean, double StandardDeviation, double HalfWidth, int Count)
{
    /// <summary>The interval's lower end (NaN for one seed).</summary>
    public double Low => Mean - HalfWidth;

    /// <summary>The interval's upper end (NaN for one seed).</summary>
    public double High => Mean + HalfWidth;

    /// <summary>Whether the interval exists (two seeds or more).</summary>
    public bool HasInterval => Count > 1;

    /// <summary>Whether this interval lies entirely above <paramref name="other"/>'s (both exist and do not overlap).</summary>
    /// <param name="other">Another method's interval.</param>
    public bool IsAbove(AccuracyInterval other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return HasInterval && other.HasInterval && Low > other.High;
    }
}

/// <summary>The statistics of the comparison table.</summary>
public static class SentimentStatistics
{
    // Two-sided 95% quantiles of Student's t, t(0.975, df), for df = 1..30.
    private static readonly double[] s_t975 =
    [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    /// <summary>
    /// t(0.975, <paramref name="degreesOfFreedom"/>): the table for 1 to 30, beyond that the Cornish-Fisher expansion around
    /// the normal quantile 1.959964 (within 0.001 of the exact value there).
    /// </summary>
    /// <param name="degreesOfFreedom">At least 1.</param>
    public static double TQuantile975(int degreesOfFreedom)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(degreesOfFreedom, 1);
        if (degreesOfFreedom <= s_t975.Length) return s_t975[degreesOfFreedom - 1];
        const double z = 1.959964;
        double n = degreesOfFreedom;
        return z + (Math.Pow(z, 3) + z) / (4 * n) + (5 * Math.Pow(z, 5) + 16 * Math.Pow(z, 3) + 3 * z) / (96 * n * n);
    }

    /// <summary>The mean of <paramref name="values"/> and its 95% t-interval (what the seeds' spread says about the mean).</summary>
    /// <param name="values">One accuracy per seed (at least one).</param>
    public static AccuracyInterval Interval(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0) throw new ArgumentException("No values.", nameof(values));
        double mean = values.Average();
        if (values.Count == 1) return new AccuracyInterval(mean, 0, double.NaN, 1);
        double sd = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
        return new AccuracyInterval(mean, sd, TQuantile975(values.Count - 1) * sd / Math.Sqrt(values.Count), values.Count);
    }

    /// <summary>
    /// The binomial standard error <c>sqrt(p (1 - p) / n)</c> of one run's accuracy <paramref name="accuracy"/> on
    /// <paramref name="testSize"/> sentences: how far the accuracy on this test set may lie from the accuracy on the whole
    /// population such sentences are drawn from, which no number of training seeds reduces.
    /// </summary>
    /// <param name="accuracy">An accuracy in [0, 1].</param>
    /// <param name="testSize">The number of test sentences.</param>
    public static double BinomialStandardError(double accuracy, int testSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(testSize, 1);
        return Math.Sqrt(accuracy * (1 - accuracy) / testSize);
    }

    /// <summary>
    /// The orderings the intervals support: pairs (higher, lower) whose intervals do not overlap, the higher one first.
    /// Pairs whose intervals overlap are not ordered.
    /// </summary>
    /// <param name="intervals">The methods' intervals, by name.</param>
    public static IReadOnlyList<(string Higher, string Lower)> SupportedOrderings(IReadOnlyList<(string Name, AccuracyInterval Interval)> intervals)
    {
        ArgumentNullException.ThrowIfNull(intervals);
        var pairs = new List<(string, string)>();
        foreach (var (name, interval) in intervals.OrderByDescending(i => i.Interval.Mean))
        {
            foreach (var (other, otherInterval) in intervals)
            {
                if (interval.IsAbove(otherInterval)) pairs.Add((name, other));
            }
        }

        return pairs;
    }
}
