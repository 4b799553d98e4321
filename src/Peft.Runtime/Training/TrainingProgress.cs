namespace Peft.Training;

/// <summary>The outcome of one <see cref="AdapterTrainer.TrainStep"/> call.</summary>
/// <param name="Step">1-based number of the step just completed (equals <see cref="AdapterTrainer.Step"/> after it).</param>
/// <param name="TotalSteps"><see cref="TrainingOptions.TotalSteps"/>.</param>
/// <param name="Loss">The loss value returned by the loss function (NaN or infinite for a skipped step).</param>
/// <param name="LearningRate">The learning rate of this step (the one applied, or the one that would have been
/// applied for a skipped step).</param>
/// <param name="GradNorm">Global L2 norm of the gradients before clipping; NaN when the step was skipped because
/// the loss was not finite (no gradients were computed).</param>
/// <param name="Elapsed">Time since the trainer's first step started.</param>
/// <param name="Skipped">True when no update was applied because the loss or gradient norm was not finite
/// (<see cref="NonFiniteLossPolicy.SkipStep"/>).</param>
public sealed record TrainingProgress(int Step, int TotalSteps, double Loss, double LearningRate, double GradNorm, TimeSpan Elapsed, bool Skipped);
