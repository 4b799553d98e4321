namespace Peft.Training;

/// <summary>The optimizers that ship with the trainer, as <see cref="OptimizerFactory"/> values for <see cref="TrainingOptions.Optimizer"/>.</summary>
/// <example>
/// <code>
/// var options = new TrainingOptions { TotalSteps = 1000, LearningRate = 0.05, Optimizer = Optimizers.Sgd, Momentum = 0.9 };
/// var mezo = new TrainingOptions { TotalSteps = 1000, LearningRate = 1e-6, Optimizer = Optimizers.MeZO(perturbationScale: 1e-3, seed: 7) };
/// </code>
/// </example>
public static class Optimizers
{
    /// <summary>
    /// <see cref="AdamWOptimizer"/> with <see cref="TrainingOptions.Beta1"/>, <see cref="TrainingOptions.Beta2"/>,
    /// <see cref="TrainingOptions.Epsilon"/> and <see cref="TrainingOptions.WeightDecay"/> (decoupled). The default.
    /// </summary>
    public static OptimizerFactory AdamW { get; } = static (parameters, options) =>
        new AdamWOptimizer(parameters, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay, options.LearningRateScales(parameters));

    /// <summary>
    /// <see cref="SgdOptimizer"/> with <see cref="TrainingOptions.Momentum"/> and <see cref="TrainingOptions.WeightDecay"/>
    /// (an L2 term added to the gradient, as <c>torch.optim.SGD</c>). For Nesterov momentum write the factory yourself:
    /// <c>(p, o) =&gt; new SgdOptimizer(p, o.Momentum, o.WeightDecay, nesterov: true)</c>.
    /// </summary>
    public static OptimizerFactory Sgd { get; } = static (parameters, options) =>
        new SgdOptimizer(parameters, options.Momentum, options.WeightDecay);

    /// <summary>
    /// <see cref="MeZOOptimizer"/>, zeroth-order: two loss evaluations per step and no backward pass. Uses
    /// <see cref="TrainingOptions.WeightDecay"/>; <see cref="TrainingOptions.MaxGradNorm"/> does not apply.
    /// </summary>
    /// <param name="perturbationScale">ε, the size of the perturbation (finite, &gt; 0).</param>
    /// <param name="seed">Seed of the random directions.</param>
    /// <returns>The factory.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="perturbationScale"/> is not a finite number &gt; 0.</exception>
    public static OptimizerFactory MeZO(double perturbationScale = 1e-3, long seed = 0)
    {
        if (!double.IsFinite(perturbationScale) || perturbationScale <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(perturbationScale), perturbationScale, "MeZO's perturbation scale must be a finite number > 0.");
        }

        return (parameters, options) => new MeZOOptimizer(parameters, perturbationScale, seed, options.WeightDecay);
    }
}
