using System.Collections.ObjectModel;
using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>
/// Trains exactly the given trainable parameters with an optimizer (<see cref="TrainingOptions.Optimizer"/>: AdamW by
/// default), global gradient-norm clipping and a warmup + cosine learning-rate schedule
/// (<see cref="LearningRateSchedule.WarmupCosine"/>), one <see cref="TrainStep"/> call per step, with
/// <see cref="TrainingOptions.Callbacks"/> around the optimizer step and <see cref="TrainingOptions.Regularizers"/> added to the loss.
/// </summary>
/// <example>
/// <code>
/// using var trainer = new AdapterTrainer(model, new TrainingOptions { TotalSteps = 1000, LearningRate = 2e-4 });
/// for (int i = 0; i &lt; 1000; i++)
/// {
///     var (x, y) = NextBatch();
///     trainer.TrainStep(() =&gt; functional.cross_entropy(model.call(x), y));
/// }
/// </code>
/// </example>
/// <remarks>
/// Only parameters with <c>requires_grad</c> are trained (frozen ones are left out, duplicates are dropped); no other
/// tensor is ever modified. Not thread-safe: call <see cref="TrainStep"/> from one thread at a time.
/// Prefer the constructor that takes the model: it applies the trainability rule and refuses a model whose declared
/// adapters were never created (a constructor without the generated <c>InitializePeft()</c>, PEFT0013), which a list of
/// parameters cannot reveal: such a model's parameters all require gradients, so they would all be trained.
/// </remarks>
public sealed partial class AdapterTrainer : IDisposable
{
    private const double ClipEpsilon = 1e-6;

    private readonly TrainingOptions _options;

    private readonly IProgress<TrainingProgress>? _progress;

    private readonly Parameter[] _parameters;

    private readonly PeftOptimizer _optimizer;

    private readonly ITrainingCallback[] _callbacks;

    private readonly Func<Tensor>[] _regularizers;

    private readonly Stopwatch _stopwatch = new();

    private bool _disposed;

    /// <summary>
    /// Creates the trainer and its optimizer (<see cref="TrainingOptions.Optimizer"/>, AdamW by default) over the trainable
    /// parameters among <paramref name="trainableParameters"/>.
    /// </summary>
    /// <param name="trainableParameters">Parameters to train, typically the model's trainable (adapter) parameters.
    /// Parameters with <c>requires_grad = false</c> are excluded; the same parameter given twice is trained once.</param>
    /// <param name="options">Hyper-parameters; validated here (<see cref="TrainingOptions.Validate"/>).</param>
    /// <param name="progress">Receives a <see cref="TrainingProgress"/> every <see cref="TrainingOptions.LogEvery"/>
    /// steps, at the last step and at every skipped step. It is called synchronously on the training thread
    /// (<see cref="Progress{T}"/> itself posts to the captured synchronization context).</param>
    /// <exception cref="ArgumentNullException">An argument, or one of the parameters, is null.</exception>
    /// <exception cref="ArgumentException">An option is invalid, or no parameter requires a gradient.</exception>
    /// <exception cref="InvalidOperationException">The optimizer factory returned null or an optimizer over other parameters.</exception>
    public AdapterTrainer(IEnumerable<Parameter> trainableParameters, TrainingOptions options, IProgress<TrainingProgress>? progress = null)
        : this(trainableParameters, options, progress, model: null)
    {
    }

    /// <summary>
    /// Creates the trainer over <paramref name="model"/>'s trainable parameters (<see cref="PeftModel.TrainableParameters"/>:
    /// the trainability rule is applied first), with the optimizer of <see cref="TrainingOptions.Optimizer"/>.
    /// </summary>
    /// <param name="model">The model whose adapters (and <c>[Trainable]</c> members) are trained.</param>
    /// <param name="options">Hyper-parameters; validated here (<see cref="TrainingOptions.Validate"/>).</param>
    /// <param name="progress">Receives a <see cref="TrainingProgress"/> as in the other constructor.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">An option is invalid, or no parameter requires a gradient.</exception>
    /// <exception cref="PeftConfigurationException">A class of the model declares adapters its constructor never created (it
    /// did not call the generated <c>InitializePeft()</c>; PEFT0013): training it would fine-tune every parameter.</exception>
    /// <exception cref="InvalidOperationException">The optimizer factory returned null or an optimizer over other parameters.</exception>
    public AdapterTrainer(nn.Module model, TrainingOptions options, IProgress<TrainingProgress>? progress = null)
        : this(TrainableParametersOf(model), options, progress, model)
    {
    }

    private static IEnumerable<Parameter> TrainableParametersOf(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.TrainableParameters();
    }

    private AdapterTrainer(IEnumerable<Parameter> trainableParameters, TrainingOptions options, IProgress<TrainingProgress>? progress, nn.Module? model)
    {
        ArgumentNullException.ThrowIfNull(trainableParameters);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();

        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        var trainable = new List<Parameter>();
        int given = 0;
        foreach (var parameter in trainableParameters)
        {
            if (parameter is null)
            {
                throw new ArgumentNullException(nameof(trainableParameters), "The parameter sequence contains a null parameter.");
            }

            given++;
            if (parameter.requires_grad && seen.Add(parameter))
            {
                trainable.Add(parameter);
            }
        }

        if (trainable.Count == 0)
        {
            throw new ArgumentException(
                string.Format(
                    CultureInfo.InvariantCulture,
                    "no trainable parameters: did you declare an adapter? {0} parameter(s) were given{1} and none has requires_grad = true "
                    + "(declare [LoRA]/[Kronecker]/[PromptTune] on a layer and call the generated InitializePeft() in the constructor, "
                    + "add one with model.ApplyTargets(...), or mark a member [Trainable]; then pass the model or model.TrainableParameters()).",
                    given,
                    model is null ? string.Empty : $" by {model.GetType().Name}"),
                nameof(trainableParameters));
        }

        _options = options;
        _progress = progress;
        _parameters = trainable.ToArray();
        Parameters = new ReadOnlyCollection<Parameter>(_parameters);

        if (options.Seed is int seed)
        {
            Seeding.SetSeed(seed);
        }

        _callbacks = options.Callbacks.ToArray();
        _regularizers = options.Regularizers.ToArray();
        _optimizer = options.Optimizer(Parameters, options)
            ?? throw new InvalidOperationException("TrainingOptions.Optimizer returned null; the factory must create an optimizer.");
        if (_optimizer.Parameters.Count != _parameters.Length
            || !_optimizer.Parameters.Zip(_parameters).All(pair => ReferenceEquals(pair.First, pair.Second)))
        {
            string kind = _optimizer.Kind;
            _optimizer.Dispose();
            throw new InvalidOperationException(
                $"TrainingOptions.Optimizer created a {kind} optimizer over other parameters than the {_parameters.Length} it was given; "
                + "create it over exactly the given list, in its order (checkpoints match optimizer state to parameters by position).");
        }

        if (!_optimizer.SupportsLearningRateScales && options.LearningRateScales(Parameters) is not null)
        {
            string kind = _optimizer.Kind;
            _optimizer.Dispose();
            throw new InvalidOperationException(
                $"TrainingOptions.ParameterLearningRate gives some parameters their own learning rate, but the {kind} optimizer applies one rate to all; "
                + "use Optimizers.AdamW, or leave ParameterLearningRate null.");
        }
    }

    /// <summary>The options the trainer was created with.</summary>
    public TrainingOptions Options => _options;

    /// <summary>
    /// Number of completed training steps: <see cref="TrainStep"/> calls that returned, counting steps skipped under
    /// <see cref="NonFiniteLossPolicy.SkipStep"/> (they consume their slot of the learning-rate schedule) and not
    /// counting calls that threw.
    /// </summary>
    public int Step { get; private set; }

    /// <summary>How many of the <see cref="Step"/> completed steps were skipped without an update.</summary>
    public int SkippedSteps { get; private set; }

    /// <summary>The learning rate the next <see cref="TrainStep"/> will use (<see cref="LearningRateSchedule.WarmupCosine"/> at <see cref="Step"/>).</summary>
    public double CurrentLearningRate => LearningRateAt(Step);

    /// <summary>The parameters being trained: the given ones with <c>requires_grad</c>, in the given order, without duplicates.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>
    /// The optimizer (<see cref="TrainingOptions.Optimizer"/>), over <see cref="Parameters"/> in the same order; its
    /// state is what <see cref="Checkpoints.CheckpointStore"/> saves and restores. Owned by the trainer.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The trainer was disposed.</exception>
    public PeftOptimizer Optimizer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _optimizer;
        }
    }

    /// <summary>
    /// Runs one training step: clears the gradients, computes the loss and the regularizer terms, back-propagates,
    /// clips the global gradient norm to <see cref="TrainingOptions.MaxGradNorm"/> and steps the optimizer with the
    /// scheduled learning rate, calling the <see cref="TrainingOptions.Callbacks"/> on the way
    /// (<see cref="ITrainingCallback"/> has the order). An optimizer without gradients
    /// (<see cref="PeftOptimizer.RequiresGradients"/> false) evaluates the loss itself instead: no backward, no clipping.
    /// </summary>
    /// <remarks>
    /// <para>When the total loss (loss plus regularizer terms, checked before back-propagation) or the gradient norm
    /// (checked after the <see cref="ITrainingCallback.AfterBackward"/> hooks, before clipping) is NaN or infinite, no
    /// update is applied and <see cref="TrainingOptions.OnNonFiniteLoss"/> decides:
    /// <see cref="NonFiniteLossPolicy.Throw"/> throws <see cref="NonFiniteLossException"/> with parameters and
    /// optimizer state untouched; <see cref="NonFiniteLossPolicy.SkipStep"/> returns a progress with
    /// <see cref="TrainingProgress.Skipped"/> set. The same holds for a loss an optimizer evaluates
    /// (<see cref="OptimizerStepContext.EvaluateLoss"/>).</para>
    /// <para>Every tensor created while the step runs, <paramref name="computeLoss"/>'s included, is disposed when the
    /// step returns (a TorchSharp dispose scope); move a tensor you want to keep out of it with
    /// <c>MoveToOuterDisposeScope()</c> or <c>DetachFromDisposeScope()</c>. Gradients are cleared by setting them to
    /// none, so a parameter that the loss does not reach is not updated by that step.</para>
    /// </remarks>
    /// <param name="computeLoss">Computes the scalar (one-element) loss from the trainable parameters. Runs with
    /// gradients enabled (without, when the optimizer evaluates the loss itself, possibly several times per step).</param>
    /// <returns>The step's outcome (also reported to the progress sink when due).</returns>
    /// <exception cref="NonFiniteLossException">The loss or gradient norm was not finite under <see cref="NonFiniteLossPolicy.Throw"/>.</exception>
    /// <exception cref="InvalidOperationException"><paramref name="computeLoss"/> or a regularizer returned null or a
    /// tensor with more than one element, or the total loss does not depend on any parameter requiring a gradient.</exception>
    /// <exception cref="ObjectDisposedException">The trainer was disposed.</exception>
    public TrainingProgress TrainStep(Func<Tensor> computeLoss)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(computeLoss);
        if (!_stopwatch.IsRunning)
        {
            _stopwatch.Start();
        }

        int stepNumber = Step + 1;
        double lr = LearningRateAt(Step);

        using var scope = torch.NewDisposeScope();
        ClearGradients();
        var evaluator = new LossEvaluator(this, computeLoss, stepNumber, lr);
        if (!_optimizer.RequiresGradients)
        {
            return GradientFreeStep(evaluator, stepNumber, lr);
        }

        Objective objective;
        using (torch.enable_grad())
        {
            objective = ComputeObjective(computeLoss);
            if (!double.IsFinite(objective.TotalValue))
            {
                return NonFinite(stepNumber, objective, double.NaN, lr);
            }

            if (!objective.Total.requires_grad)
            {
                throw new InvalidOperationException(
                    "The loss does not require a gradient: it does not depend on any trainable parameter. Was it computed under "
                    + "torch.no_grad() or from detached tensors, or are all the parameters it uses frozen?");
            }

            objective.Total.backward();
        }

        double gradNorm;
        using (torch.no_grad())
        {
            RunCallbacks(static (c, x) => c.AfterBackward(x), Context(stepNumber, lr, objective.Loss, objective.Regularizer, double.NaN));
            var grads = CollectGradients();
            gradNorm = GlobalNorm(grads);
            if (!double.IsFinite(gradNorm))
            {
                return NonFinite(stepNumber, objective, gradNorm, lr);
            }

            if (_options.MaxGradNorm > 0)
            {
                double coefficient = _options.MaxGradNorm / (gradNorm + ClipEpsilon);
                if (coefficient < 1.0)
                {
                    foreach (var grad in grads)
                    {
                        grad.mul_(coefficient);
                    }
                }
            }

            RunCallbacks(static (c, x) => c.BeforeStep(x), Context(stepNumber, lr, objective.Loss, objective.Regularizer, gradNorm));
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

            return Skip(stepNumber, evaluator.LastLoss, evaluator.LastRegularizer, gradNorm, lr);
        }

        return Completed(stepNumber, objective.Loss, objective.Regularizer, gradNorm, lr);
    }

    /// <summary>
    /// Sets the step counters as they were when a checkpoint was written, so the learning-rate schedule and
    /// progress continue from there. Used by <see cref="Checkpoints.CheckpointStore"/> after it restored the
    /// parameters and the optimizer state.
    /// </summary>
    internal void RestoreCounters(int step, int skippedSteps)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfNegative(skippedSteps);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(skippedSteps, step);
        Step = step;
        SkippedSteps = skippedSteps;
    }

    /// <summary>Disposes the optimizer and its state. The parameters belong to the caller and are not disposed.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _optimizer.Dispose();
    }

    private double LearningRateAt(int step) =>
        LearningRateSchedule.WarmupCosine(step, _options.WarmupSteps, _options.TotalSteps, _options.LearningRate, _options.MinLearningRateRatio);
}
