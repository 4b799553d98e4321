namespace Peft.Training;

/// <summary>The outcome of one <see cref="AdapterTrainer.TrainStep"/> call.</summary>
/// <param name="Step">1-based number of the step just completed (equals <see cref="AdapterTrainer.Step"/> after it).</param>
/// <param name="TotalSteps"><see cref="TrainingOptions.TotalSteps"/>.</param>
/// <param name="Loss">The loss value returned by the loss function, without the <see cref="TrainingOptions.Regularizers"/>
/// (NaN or infinite for a step skipped because of it). For an optimizer that evaluates the loss itself, its first
/// evaluation of the step.</param>
/// <param name="LearningRate">The learning rate of this step (the one applied, or the one that would have been
/// applied for a skipped step).</param>
/// <param name="GradNorm">Global L2 norm of the gradients before clipping; NaN when the step was skipped because
/// the loss was not finite (no gradients were computed), and for an optimizer without gradients.</param>
/// <param name="Elapsed">Time since the trainer's first step started.</param>
/// <param name="Skipped">True when no update was applied because the loss or gradient norm was not finite
/// (<see cref="NonFiniteLossPolicy.SkipStep"/>).</param>
public sealed record TrainingProgress(int Step, int TotalSteps, double Loss, double LearningRate, double GradNorm, TimeSpan Elapsed, bool Skipped)
{
    /// <summary>
    /// The sum of the <see cref="TrainingOptions.Regularizers"/> terms at this step (0 without regularizers). The trained
    /// objective is <see cref="TotalLoss"/>.
    /// </summary>
    public double RegularizerLoss { get; init; }

    /// <summary><see cref="Loss"/> + <see cref="RegularizerLoss"/>: the objective that was back-propagated and checked for NaN.</summary>
    public double TotalLoss => Loss + RegularizerLoss;
}
