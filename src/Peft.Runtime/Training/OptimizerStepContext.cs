namespace Peft.Training;

/// <summary>What <see cref="PeftOptimizer.Step"/> gets from <see cref="AdapterTrainer"/> for one training step.</summary>
/// <remarks>
/// <para>A zeroth-order optimizer (<see cref="PeftOptimizer.RequiresGradients"/> false) computes its update from loss
/// values alone. MeZO, for example: perturb the parameters by <c>+εz</c>, <see cref="EvaluateLoss"/> (<c>L+</c>), move
/// them to <c>-εz</c>, <see cref="EvaluateLoss"/> (<c>L-</c>), move them back and update along <c>z</c> with
/// <c>(L+ - L-) / 2ε</c>; see <see cref="MeZOOptimizer"/>.</para>
/// <para>Created by the trainer; an optimizer can also be driven by hand with <see cref="OptimizerStepContext(int, double, Func{double}?)"/>.</para>
/// </remarks>
public sealed class OptimizerStepContext
{
    private readonly Func<double>? _evaluateLoss;

    /// <summary>Creates a context.</summary>
    /// <param name="step">1-based number of the step being taken.</param>
    /// <param name="learningRate">The learning rate of this step.</param>
    /// <param name="evaluateLoss">Evaluates the loss at the current parameter values, or null when it cannot be
    /// evaluated (then <see cref="EvaluateLoss"/> throws).</param>
    public OptimizerStepContext(int step, double learningRate, Func<double>? evaluateLoss)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        Step = step;
        LearningRate = learningRate;
        _evaluateLoss = evaluateLoss;
    }

    /// <summary>1-based number of the step being taken (the trainer's <see cref="AdapterTrainer.Step"/> + 1).</summary>
    public int Step { get; }

    /// <summary>The learning rate the schedule gives this step.</summary>
    public double LearningRate { get; }

    /// <summary>How many times <see cref="EvaluateLoss"/> was called in this step.</summary>
    public int LossEvaluations { get; private set; }

    /// <summary>
    /// Runs the step's loss function again at the current parameter values, without gradients, and returns the total
    /// loss (the loss plus <see cref="TrainingOptions.Regularizers"/>). The loss function must compute the same function
    /// every time it is called within a step (same batch); randomness inside it (dropout) draws anew each time.
    /// </summary>
    /// <returns>The total loss, always finite.</returns>
    /// <exception cref="NonFiniteLossException">The total loss is NaN or infinite. Undo any change to the parameters
    /// and let it propagate (a <c>finally</c> block): the trainer then applies
    /// <see cref="TrainingOptions.OnNonFiniteLoss"/> as for any non-finite loss.</exception>
    /// <exception cref="InvalidOperationException">No loss function is available.</exception>
    public double EvaluateLoss()
    {
        if (_evaluateLoss is null)
        {
            throw new InvalidOperationException("This step has no loss function to evaluate.");
        }

        LossEvaluations++;
        return _evaluateLoss();
    }
}
