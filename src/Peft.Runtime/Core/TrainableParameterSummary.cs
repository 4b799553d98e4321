using System.Globalization;

namespace Peft;

/// <summary>Counts of trainable and total parameter elements, as Hugging Face PEFT's <c>print_trainable_parameters</c> reports.</summary>
/// <param name="TrainableParameters">Elements of parameters with <c>requires_grad</c>.</param>
/// <param name="AllParameters">Elements of all parameters (each shared parameter counted once).</param>
public sealed record TrainableParameterSummary(long TrainableParameters, long AllParameters)
{
    /// <summary>100 · trainable / all (0 for a model without parameters).</summary>
    public double TrainablePercent => AllParameters == 0 ? 0.0 : 100.0 * TrainableParameters / AllParameters;

    /// <summary>
    /// PEFT's line, e.g. <c>trainable params: 1,234 || all params: 56,789 || trainable%: 2.1730</c> (invariant culture).
    /// </summary>
    /// <returns>The summary line.</returns>
    public override string ToString() => string.Format(
        CultureInfo.InvariantCulture,
        "trainable params: {0:N0} || all params: {1:N0} || trainable%: {2:F4}",
        TrainableParameters,
        AllParameters,
        TrainablePercent);
}
