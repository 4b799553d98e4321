using System.Collections.ObjectModel;
using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>The objective of a step: the loss with the adapters regularisers, evaluated once per step (with gradients) or as a gradient-free optimizer asks.</summary>
public sealed partial class AdapterTrainer
{
    private TrainingProgress GradientFreeStep(LossEvaluator evaluator, int stepNumber, double lr)
    {
        using (torch.no_grad())
        {
            RunCallbacks(static (c, x) => c.BeforeStep(x), Context(stepNumber, lr, double.NaN, double.NaN, double.NaN));
        }

        try
        {
            _optimizer.Step(new OptimizerStepContext(stepNumber, lr, evaluator.Evaluate));
        }
        catch (NonFiniteLossException ex) when (ReferenceEquals(ex, evaluator.Raised))
        {
            if (_options.OnNonFiniteLoss == NonFiniteLossPolicy.Throw)
            {
                throw;
            }

            return Skip(stepNumber, evaluator.LastLoss, evaluator.LastRegularizer, double.NaN, lr);
        }

        if (evaluator.Count == 0)
        {
            throw new InvalidOperationException(
                $"The {_optimizer.Kind} optimizer does not use gradients, but its step {stepNumber} evaluated no loss "
                + "(OptimizerStepContext.EvaluateLoss): such an optimizer must evaluate the loss to know where to go.");
        }

        return Completed(stepNumber, evaluator.FirstLoss, evaluator.FirstRegularizer, double.NaN, lr);
    }

    /// <summary>The loss function's value, the regularizer terms and their sum (the tensor that is back-propagated).</summary>
    private readonly record struct Objective(Tensor Total, double Loss, double Regularizer, double TotalValue);

    /// <summary>Runs the loss function and the regularizers; checks that each returns one element.</summary>
    private Objective ComputeObjective(Func<Tensor> computeLoss)
    {
        var loss = computeLoss() ?? throw new InvalidOperationException("computeLoss returned null; it must return the scalar loss tensor.");
        if (loss.numel() != 1)
        {
            throw new InvalidOperationException(string.Format(
                CultureInfo.InvariantCulture,
                "computeLoss must return a scalar (one-element) loss; got a tensor of shape [{0}]. Reduce it with .mean() or .sum().",
                string.Join(", ", loss.shape)));
        }

        double lossValue = loss.ToDouble();
        if (_regularizers.Length == 0)
        {
            return new Objective(loss, lossValue, 0.0, lossValue);
        }

        var total = loss;
        double regularizer = 0;
        for (int i = 0; i < _regularizers.Length; i++)
        {
            var term = _regularizers[i]() ?? throw new InvalidOperationException(
                string.Format(CultureInfo.InvariantCulture, "TrainingOptions.Regularizers[{0}] returned null; it must return a one-element tensor.", i));
            if (term.numel() != 1)
            {
                throw new InvalidOperationException(string.Format(
                    CultureInfo.InvariantCulture,
                    "TrainingOptions.Regularizers[{0}] must return a scalar (one-element) term; got a tensor of shape [{1}].",
                    i,
                    string.Join(", ", term.shape)));
            }

            regularizer += term.ToDouble();
            total = total + term;
        }

        return new Objective(total, lossValue, regularizer, total.ToDouble());
    }

    /// <summary>
    /// <see cref="OptimizerStepContext.EvaluateLoss"/> for one step: the objective without gradients, each evaluation in
    /// its own dispose scope; a non-finite total throws a <see cref="NonFiniteLossException"/> the trainer recognises.
    /// </summary>
    private sealed class LossEvaluator(AdapterTrainer trainer, Func<Tensor> computeLoss, int stepNumber, double lr)
    {
        public int Count { get; private set; }

        public double FirstLoss { get; private set; } = double.NaN;

        public double FirstRegularizer { get; private set; } = double.NaN;

        public double LastLoss { get; private set; } = double.NaN;

        public double LastRegularizer { get; private set; } = double.NaN;

        public NonFiniteLossException? Raised { get; private set; }

        public double Evaluate()
        {
            Objective objective;
            using (torch.NewDisposeScope())
            using (torch.no_grad())
            {
                objective = trainer.ComputeObjective(computeLoss);
            }

            Count++;
            if (Count == 1)
            {
                (FirstLoss, FirstRegularizer) = (objective.Loss, objective.Regularizer);
            }

            (LastLoss, LastRegularizer) = (objective.Loss, objective.Regularizer);
            if (!double.IsFinite(objective.TotalValue))
            {
                Raised = new NonFiniteLossException(stepNumber, trainer._options.TotalSteps, objective.TotalValue, double.NaN, lr);
                throw Raised;
            }

            return objective.TotalValue;
        }
    }
}
