using System.Collections.ObjectModel;
using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>How a step ends (completed, skipped, refused as non-finite), the callbacks it runs, and the gradients it clips.</summary>
public sealed partial class AdapterTrainer
{
    private TrainingProgress Completed(int stepNumber, double loss, double regularizer, double gradNorm, double lr)
    {
        Step = stepNumber;
        using (torch.no_grad())
        {
            RunCallbacks(static (c, x) => c.AfterStep(x), Context(stepNumber, lr, loss, regularizer, gradNorm));
        }

        var progress = new TrainingProgress(stepNumber, _options.TotalSteps, loss, lr, gradNorm, _stopwatch.Elapsed, Skipped: false) { RegularizerLoss = regularizer };
        if (stepNumber % _options.LogEvery == 0 || stepNumber == _options.TotalSteps)
        {
            _progress?.Report(progress);
        }

        return progress;
    }

    private TrainingProgress NonFinite(int stepNumber, Objective objective, double gradNorm, double lr)
    {
        if (_options.OnNonFiniteLoss == NonFiniteLossPolicy.Throw)
        {
            throw new NonFiniteLossException(stepNumber, _options.TotalSteps, objective.TotalValue, gradNorm, lr);
        }

        return Skip(stepNumber, objective.Loss, objective.Regularizer, gradNorm, lr);
    }

    private TrainingProgress Skip(int stepNumber, double loss, double regularizer, double gradNorm, double lr)
    {
        Step = stepNumber;
        SkippedSteps++;
        var progress = new TrainingProgress(stepNumber, _options.TotalSteps, loss, lr, gradNorm, _stopwatch.Elapsed, Skipped: true) { RegularizerLoss = regularizer };
        _progress?.Report(progress);
        return progress;
    }

    private TrainingCallbackContext Context(int stepNumber, double lr, double loss, double regularizer, double gradNorm) =>
        new(stepNumber, _options.TotalSteps, lr, loss, regularizer, gradNorm, Parameters, _optimizer);

    private void RunCallbacks(Action<ITrainingCallback, TrainingCallbackContext> hook, TrainingCallbackContext context)
    {
        foreach (var callback in _callbacks)
        {
            hook(callback, context);
        }
    }

    private void ClearGradients()
    {
        foreach (var parameter in _parameters)
        {
            parameter.grad = null;
        }
    }

    private List<Tensor> CollectGradients()
    {
        var grads = new List<Tensor>(_parameters.Length);
        foreach (var parameter in _parameters)
        {
            var grad = parameter.grad;
            if (grad is not null)
            {
                grads.Add(grad);
            }
        }

        return grads;
    }

    /// <summary>L2 norm of all gradients viewed as one vector, accumulated in at least float32.</summary>
    private static double GlobalNorm(List<Tensor> grads)
    {
        if (grads.Count == 0)
        {
            return 0.0;
        }

        var device = grads[0].device;
        var norms = new List<Tensor>(grads.Count);
        foreach (var grad in grads)
        {
            var g = grad.dtype is ScalarType.Float32 or ScalarType.Float64 ? grad : grad.to_type(ScalarType.Float32);
            norms.Add(g.norm().to_type(ScalarType.Float64).to(device));
        }

        return torch.stack(norms).norm().ToDouble();
    }
}
