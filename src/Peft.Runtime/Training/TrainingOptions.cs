using System.Globalization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>What <see cref="AdapterTrainer"/> does when a step produces a non-finite loss or gradient norm.</summary>
public enum NonFiniteLossPolicy
{
    /// <summary>
    /// Throw <see cref="NonFiniteLossException"/> before any update: parameters and optimizer state stay as they
    /// were, and <see cref="AdapterTrainer.Step"/> does not advance.
    /// </summary>
    Throw,

    /// <summary>
    /// Apply no update, count the step as done (it consumes its learning-rate schedule slot), report it with
    /// <see cref="TrainingProgress.Skipped"/> set, and let training continue.
    /// </summary>
    SkipStep,
}

/// <summary>
/// Hyper-parameters of <see cref="AdapterTrainer"/>: the optimizer (AdamW by default), linear warmup followed by cosine
/// decay (<see cref="LearningRateSchedule.WarmupCosine"/>), global gradient-norm clipping, seeding, progress reporting,
/// and the extension points: <see cref="Callbacks"/> around the optimizer step and <see cref="Regularizers"/> added to the loss.
/// </summary>
/// <remarks>
/// Values are checked by <see cref="Validate"/>, which <see cref="AdapterTrainer"/> calls on construction; every
/// bad value is an <see cref="ArgumentException"/> whose <see cref="ArgumentException.ParamName"/> is the option's
/// name and whose message states the value that was given.
/// </remarks>
public sealed record TrainingOptions
{
    /// <summary>Peak learning rate, reached at the end of warmup (must be finite and &gt; 0). Default 1e-3.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>
    /// Creates the optimizer: <see cref="Optimizers.AdamW"/> (the default), <see cref="Optimizers.Sgd"/>,
    /// <see cref="Optimizers.MeZO"/> or your own <see cref="PeftOptimizer"/>. Must not be null.
    /// </summary>
    public OptimizerFactory Optimizer { get; init; } = Optimizers.AdamW;

    /// <summary>
    /// Per-parameter peak learning rates: a parameter for which it returns a value trains with that peak learning rate
    /// instead of <see cref="LearningRate"/>, on the same warmup and decay schedule (its rate at every step is the schedule's
    /// times <c>value / LearningRate</c>); null for the others. Null (the default): every parameter uses
    /// <see cref="LearningRate"/>. For methods with two learning rates, such as DePT's prompt and position table
    /// (<c>model.DePTLearningRates(tableRate)</c>). The optimizer must support it (<see cref="PeftOptimizer.SupportsLearningRateScales"/>:
    /// AdamW does); values must be finite and &gt; 0, which <see cref="LearningRateScales"/> checks.
    /// </summary>
    public Func<Parameter, double?>? ParameterLearningRate { get; init; }

    /// <summary>
    /// Weight decay (must be finite and &gt;= 0). Default 0. AdamW (and MeZO): decoupled, each step multiplies every
    /// parameter by <c>1 - lr * WeightDecay</c>. SGD: an L2 term <c>WeightDecay * p</c> added to the gradient, as
    /// <c>torch.optim.SGD</c>.
    /// </summary>
    public double WeightDecay { get; init; }

    /// <summary>SGD's momentum factor (<see cref="Optimizers.Sgd"/>), in [0, 1); 0 is plain SGD. Default 0.9. Other optimizers ignore it.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>AdamW decay rate of the first-moment (mean) estimate, in [0, 1). Default 0.9.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW decay rate of the second-moment (uncentred variance) estimate, in [0, 1). Default 0.999.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>AdamW term added to the denominator for numerical stability (must be finite and &gt; 0). Default 1e-8.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>
    /// Number of linear warmup steps (0 to <see cref="TotalSteps"/>); see <see cref="LearningRateSchedule.WarmupCosine"/>.
    /// Default 0.
    /// </summary>
    public int WarmupSteps { get; init; }

    /// <summary>Number of training steps the schedule spans (must be &gt; 0; there is no usable default).</summary>
    public int TotalSteps { get; init; }

    /// <summary>
    /// Floor of the cosine decay as a fraction of <see cref="LearningRate"/>, in [0, 1]: the learning rate at the last
    /// step is <c>LearningRate * MinLearningRateRatio</c>. Default 0.
    /// </summary>
    public double MinLearningRateRatio { get; init; }

    /// <summary>
    /// Maximum global L2 norm of the gradients (all trainable parameters viewed as one vector); larger gradients are
    /// scaled down by <c>MaxGradNorm / (norm + 1e-6)</c>, as in PyTorch's <c>clip_grad_norm_</c>. A value &lt;= 0
    /// disables clipping (the norm is still computed and reported). Must not be NaN. Default 1.0.
    /// </summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>
    /// When set, <see cref="AdapterTrainer"/> calls <see cref="Seeding.SetSeed"/> with it on construction, which makes
    /// random operations inside the loss (dropout, sampling) reproducible. Seed before building the model as well if
    /// the adapter initialization must be reproducible too. Default: not set (the global generators are left alone).
    /// </summary>
    public int? Seed { get; init; }

    /// <summary>
    /// Progress is reported every <c>LogEvery</c> completed steps, at the last step (<see cref="TotalSteps"/>) and
    /// at every skipped step (must be &gt;= 1). Default 10.
    /// </summary>
    public int LogEvery { get; init; } = 10;

    /// <summary>What to do when the loss or the gradient norm is NaN or infinite. Default <see cref="NonFiniteLossPolicy.Throw"/>.</summary>
    public NonFiniteLossPolicy OnNonFiniteLoss { get; init; } = NonFiniteLossPolicy.Throw;

    /// <summary>
    /// Hooks run at each step after backward, before and after the optimizer step, in this order
    /// (<see cref="ITrainingCallback"/>). Default none; the list and its items must not be null.
    /// </summary>
    public IReadOnlyList<ITrainingCallback> Callbacks { get; init; } = Array.Empty<ITrainingCallback>();

    /// <summary>
    /// Terms added to the loss before back-propagation, each a one-element tensor computed at each step right after
    /// the loss function, inside the step (with gradients enabled, in its dispose scope); for example an L1 penalty on
    /// gates or an orthogonality penalty on adapter factors. The non-finite policy applies to the total (loss plus
    /// terms); <see cref="TrainingProgress.Loss"/> is the loss alone and <see cref="TrainingProgress.RegularizerLoss"/>
    /// the sum of the terms. Default none; the list and its items must not be null.
    /// </summary>
    public IReadOnlyList<Func<Tensor>> Regularizers { get; init; } = Array.Empty<Func<Tensor>>();

    /// <summary>
    /// Each parameter's learning rate as a multiple of the schedule's (<see cref="ParameterLearningRate"/> divided by
    /// <see cref="LearningRate"/>), in the order given; null when <see cref="ParameterLearningRate"/> is null or gives every
    /// parameter the common rate. Optimizers that support per-parameter rates read it in their factory.
    /// </summary>
    /// <param name="parameters">The trained parameters, in the trainer's order.</param>
    /// <returns>The scales, or null.</returns>
    /// <exception cref="ArgumentException"><see cref="ParameterLearningRate"/> returned a value that is not finite and &gt; 0
    /// (the message names the parameter's shape and the value).</exception>
    public IReadOnlyList<double>? LearningRateScales(IReadOnlyList<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (ParameterLearningRate is not { } rateOf) return null;
        var scales = new double[parameters.Count];
        bool any = false;
        for (int i = 0; i < scales.Length; i++)
        {
            double rate = rateOf(parameters[i]) ?? LearningRate;
            if (!double.IsFinite(rate) || rate <= 0)
            {
                throw Bad(nameof(ParameterLearningRate), Format(rate),
                    $"must give finite learning rates > 0, but gave this for parameter {i} of shape [{string.Join(", ", parameters[i].shape)}]");
            }

            scales[i] = rate / LearningRate;
            any |= scales[i] != 1;
        }

        return any ? scales : null;
    }

    /// <summary>Checks every option and throws on the first bad one.</summary>
    /// <exception cref="ArgumentException">An option is out of range; <see cref="ArgumentException.ParamName"/> names it
    /// and the message gives the value.</exception>
    public void Validate()
    {
        if (!double.IsFinite(LearningRate) || LearningRate <= 0)
        {
            throw Bad(nameof(LearningRate), Format(LearningRate), "must be a finite number > 0 (typical LoRA values: 1e-4 to 1e-3)");
        }

        if (Optimizer is null)
        {
            throw Bad(nameof(Optimizer), "null", "must be an optimizer factory (Optimizers.AdamW, Optimizers.Sgd, Optimizers.MeZO(...) or your own)");
        }

        if (!double.IsFinite(WeightDecay) || WeightDecay < 0)
        {
            throw Bad(nameof(WeightDecay), Format(WeightDecay), "must be a finite number >= 0");
        }

        if (!(Momentum >= 0 && Momentum < 1))
        {
            throw Bad(nameof(Momentum), Format(Momentum), "must be in [0, 1)");
        }

        if (!(Beta1 >= 0 && Beta1 < 1))
        {
            throw Bad(nameof(Beta1), Format(Beta1), "must be in [0, 1)");
        }

        if (!(Beta2 >= 0 && Beta2 < 1))
        {
            throw Bad(nameof(Beta2), Format(Beta2), "must be in [0, 1)");
        }

        if (!double.IsFinite(Epsilon) || Epsilon <= 0)
        {
            throw Bad(nameof(Epsilon), Format(Epsilon), "must be a finite number > 0");
        }

        if (TotalSteps <= 0)
        {
            throw Bad(nameof(TotalSteps), Format(TotalSteps), "must be > 0 (it is required: set it to the number of optimizer steps you will run)");
        }

        if (WarmupSteps < 0 || WarmupSteps > TotalSteps)
        {
            throw Bad(nameof(WarmupSteps), Format(WarmupSteps), $"must be between 0 and TotalSteps ({Format(TotalSteps)})");
        }

        if (!(MinLearningRateRatio >= 0 && MinLearningRateRatio <= 1))
        {
            throw Bad(nameof(MinLearningRateRatio), Format(MinLearningRateRatio), "must be in [0, 1]");
        }

        if (double.IsNaN(MaxGradNorm))
        {
            throw Bad(nameof(MaxGradNorm), Format(MaxGradNorm), "must be a number (use a value <= 0 to disable clipping)");
        }

        if (LogEvery < 1)
        {
            throw Bad(nameof(LogEvery), Format(LogEvery), "must be >= 1");
        }

        if (!Enum.IsDefined(OnNonFiniteLoss))
        {
            throw Bad(nameof(OnNonFiniteLoss), Format((int)OnNonFiniteLoss), "must be NonFiniteLossPolicy.Throw or NonFiniteLossPolicy.SkipStep");
        }

        if (Callbacks is null || Callbacks.Any(callback => callback is null))
        {
            throw Bad(nameof(Callbacks), Callbacks is null ? "null" : "a null item", "must be a list of callbacks without null items");
        }

        if (Regularizers is null || Regularizers.Any(term => term is null))
        {
            throw Bad(nameof(Regularizers), Regularizers is null ? "null" : "a null item", "must be a list of functions without null items");
        }
    }

    private static ArgumentException Bad(string option, string value, string rule) =>
        new($"TrainingOptions.{option} {rule}; got {value}.", option);

    private static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static string Format(int value) => value.ToString(CultureInfo.InvariantCulture);
}
