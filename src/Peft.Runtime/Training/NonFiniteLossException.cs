using System.Globalization;

namespace Peft.Training;

/// <summary>
/// Thrown by <see cref="AdapterTrainer.TrainStep"/> under <see cref="NonFiniteLossPolicy.Throw"/> when the loss or the
/// gradient norm is NaN or infinite. No update was applied: parameters and optimizer state are as they were before
/// the step, and <see cref="AdapterTrainer.Step"/> did not advance.
/// </summary>
public sealed class NonFiniteLossException : Exception
{
    /// <summary>Creates the exception and its message.</summary>
    /// <param name="step">1-based number of the failed step.</param>
    /// <param name="totalSteps">Total number of steps of the run.</param>
    /// <param name="loss">The loss value.</param>
    /// <param name="gradNorm">The gradient norm before clipping, or NaN when the loss itself was not finite.</param>
    /// <param name="learningRate">The learning rate the step would have used.</param>
    public NonFiniteLossException(int step, int totalSteps, double loss, double gradNorm, double learningRate)
        : base(BuildMessage(step, totalSteps, loss, gradNorm, learningRate))
    {
        Step = step;
        TotalSteps = totalSteps;
        Loss = loss;
        GradNorm = gradNorm;
        LearningRate = learningRate;
    }

    /// <summary>1-based number of the failed step (the <see cref="TrainingProgress.Step"/> it would have reported).</summary>
    public int Step { get; }

    /// <summary>Total number of steps of the run (<see cref="TrainingOptions.TotalSteps"/>).</summary>
    public int TotalSteps { get; }

    /// <summary>The loss value of the failed step.</summary>
    public double Loss { get; }

    /// <summary>The gradient norm before clipping; NaN when the loss was not finite (no gradients were computed).</summary>
    public double GradNorm { get; }

    /// <summary>The learning rate the failed step would have used.</summary>
    public double LearningRate { get; }

    /// <summary>True when the loss was finite and only the gradients were not.</summary>
    public bool IsGradientNonFinite => double.IsFinite(Loss);

    private static string BuildMessage(int step, int totalSteps, double loss, double gradNorm, double learningRate)
    {
        var c = CultureInfo.InvariantCulture;
        string what = double.IsFinite(loss)
            ? string.Format(c, "the gradient norm is {0} (the loss, {1}, was finite)", gradNorm, loss)
            : string.Format(c, "the loss is {0}", loss);
        string cause = double.IsFinite(loss)
            ? "look for operations with infinite gradients at some inputs (sqrt or pow at 0, log near 0, division by a small number)"
            : "check the batch for NaN/Infinity inputs or invalid targets";
        return string.Format(
            c,
            "Training step {0} of {1}: {2}. No update was applied: parameters and optimizer state are unchanged. "
            + "Try a lower learning rate (this step's was {3}), {4}, or set TrainingOptions.OnNonFiniteLoss = "
            + "NonFiniteLossPolicy.SkipStep to skip such steps and continue.",
            step, totalSteps, what, learningRate, cause);
    }
}
