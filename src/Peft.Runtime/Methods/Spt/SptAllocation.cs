namespace Peft;

/// <summary>How SPT tunes one weight, once its share of the global top-τ sensitive entries is known (<see cref="SptAllocation"/>).</summary>
public enum SptTuning
{
    /// <summary>None of its entries is among the sensitive ones: it stays frozen.</summary>
    Frozen,

    /// <summary>Only its selected entries train (a gradient mask).</summary>
    Unstructured,

    /// <summary>A matrix with enough selected entries: a LoRA adapter of rank <see cref="SptOptions.Rank"/> on its layer replaces them.</summary>
    Structured,

    /// <summary>A vector (bias, norm) with enough selected entries: all of it trains.</summary>
    Full,
}

/// <summary>
/// SPT's allocation rule as pure functions (He et al., 2023, "Sensitivity-Aware Visual Parameter-Efficient Fine-Tuning";
/// ziplab/SPT): a matrix <c>[out, in]</c> whose selected count reaches <c>P_struct/α</c>, with <c>P_struct = r(in + out)</c>
/// the parameters of a rank-<c>r</c> LoRA, is tuned by LoRA; a vector whose count reaches <c>dim/β</c> is tuned fully;
/// anything else with selected entries trains those entries only.
/// </summary>
public static class SptAllocation
{
    /// <summary><c>P_struct/α = r(in + out)/α</c>: the selected count from which a matrix gets LoRA.</summary>
    /// <param name="inFeatures"><c>in</c>.</param>
    /// <param name="outFeatures"><c>out</c>.</param>
    /// <param name="rank"><c>r</c> (8 in the paper).</param>
    /// <param name="alpha"><c>α</c> (5 in the paper).</param>
    /// <returns>The threshold (not rounded).</returns>
    public static double StructuredThreshold(long inFeatures, long outFeatures, int rank, double alpha) =>
        (double)rank * (inFeatures + outFeatures) / alpha;

    /// <summary>The tuning of a weight of <paramref name="shape"/> with <paramref name="count"/> selected entries.</summary>
    /// <param name="shape">The weight's shape: <c>[out, in]</c> for a matrix, <c>[dim]</c> for a vector (others are tuned unstructured).</param>
    /// <param name="count">How many of its entries are among the global top-τ.</param>
    /// <param name="options">Rank, α and β.</param>
    /// <returns>How to tune it.</returns>
    public static SptTuning Decide(IReadOnlyList<long> shape, long count, SptOptions options)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(options);
        if (count <= 0)
        {
            return SptTuning.Frozen;
        }

        if (shape.Count == 2 && count >= StructuredThreshold(shape[1], shape[0], options.Rank, options.Alpha))
        {
            return SptTuning.Structured;
        }

        if (shape.Count == 1 && count >= shape[0] / options.Beta)
        {
            return SptTuning.Full;
        }

        return SptTuning.Unstructured;
    }
}
