using TorchSharp.Modules;

namespace Peft.Training;

/// <summary>
/// Code that runs inside each <see cref="AdapterTrainer.TrainStep"/>, at fixed points around the optimizer step (rank
/// schedules such as AdaLoRA's, gates such as SoRA's, gradient masks, logging of gradients). Register instances in
/// <see cref="TrainingOptions.Callbacks"/>; they run in list order at each point. Implement only the hooks you need:
/// the others do nothing.
/// </summary>
/// <remarks>
/// <para>Order within a step with a gradient-based optimizer: loss and regularizers, backward,
/// <see cref="AfterBackward"/>, gradient norm (checked for NaN, then clipped), learning rate,
/// <see cref="BeforeStep"/>, <see cref="PeftOptimizer.Step"/>, <see cref="AfterStep"/>, progress report. An optimizer
/// without gradients (<see cref="PeftOptimizer.RequiresGradients"/> false) has no backward pass:
/// <see cref="AfterBackward"/> is not called and <see cref="BeforeStep"/> sees a NaN loss (the optimizer evaluates it).</para>
/// <para>An exception thrown by <see cref="AfterBackward"/> or <see cref="BeforeStep"/> aborts the step: the optimizer does
/// not run, parameters and optimizer state are as before (unless the callback changed them itself),
/// <see cref="AdapterTrainer.Step"/> does not advance, the callbacks after it do not run, and the exception propagates
/// from <see cref="AdapterTrainer.TrainStep"/>. An exception thrown by <see cref="AfterStep"/> propagates after the
/// update was applied and counted, without a progress report. A step skipped for a non-finite loss
/// (<see cref="NonFiniteLossPolicy.SkipStep"/>) calls no hook after the point where it stopped.</para>
/// <para>Hooks run on the training thread, inside the step's dispose scope and without gradient recording, so tensors
/// they create are freed when the step returns.</para>
/// </remarks>
public interface ITrainingCallback
{
    /// <summary>
    /// After back-propagation, before the gradient norm is computed and the gradients are clipped: each trained
    /// parameter's <c>grad</c> is the raw gradient of the total loss (or none when the loss did not reach it). Changes
    /// to the gradients here count in the norm, the clipping and the update. <see cref="TrainingCallbackContext.GradNorm"/> is NaN.
    /// </summary>
    /// <param name="context">The step.</param>
    void AfterBackward(TrainingCallbackContext context)
    {
    }

    /// <summary>
    /// Just before <see cref="PeftOptimizer.Step"/>: the gradients are clipped and
    /// <see cref="TrainingCallbackContext.GradNorm"/> is the norm before clipping.
    /// </summary>
    /// <param name="context">The step.</param>
    void BeforeStep(TrainingCallbackContext context)
    {
    }

    /// <summary>
    /// After <see cref="PeftOptimizer.Step"/>: the parameters and the optimizer state are updated and
    /// <see cref="AdapterTrainer.Step"/> counts the step. Gradients are still there (cleared at the next step).
    /// </summary>
    /// <param name="context">The step.</param>
    void AfterStep(TrainingCallbackContext context)
    {
    }
}

/// <summary>What an <see cref="ITrainingCallback"/> hook sees of the step in progress.</summary>
/// <param name="Step">1-based number of the step in progress (<see cref="AdapterTrainer.Step"/> + 1 before the update,
/// <see cref="AdapterTrainer.Step"/> in <see cref="ITrainingCallback.AfterStep"/>).</param>
/// <param name="TotalSteps"><see cref="TrainingOptions.TotalSteps"/>.</param>
/// <param name="LearningRate">The learning rate of the step.</param>
/// <param name="Loss">The loss the loss function returned (without regularizers); NaN in
/// <see cref="ITrainingCallback.BeforeStep"/> when the optimizer evaluates the loss itself.</param>
/// <param name="RegularizerLoss">The sum of the regularizer terms (0 without regularizers; NaN when not known yet).</param>
/// <param name="GradNorm">The global gradient norm before clipping; NaN in <see cref="ITrainingCallback.AfterBackward"/>
/// and for an optimizer without gradients.</param>
/// <param name="Parameters">The trained parameters (<see cref="AdapterTrainer.Parameters"/>).</param>
/// <param name="Optimizer">The optimizer, for its state (for example to reset the moments of pruned ranks).</param>
public sealed record TrainingCallbackContext(
    int Step,
    int TotalSteps,
    double LearningRate,
    double Loss,
    double RegularizerLoss,
    double GradNorm,
    IReadOnlyList<Parameter> Parameters,
    PeftOptimizer Optimizer);
