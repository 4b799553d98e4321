using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>
/// MeZO (Malladi et al., 2023, "Fine-Tuning Language Models with Just Forward Passes"): a zeroth-order optimizer that
/// estimates the gradient from two loss evaluations and never runs a backward pass (<see cref="Optimizers.MeZO"/>).
/// </summary>
/// <remarks>
/// <para>Each step draws a direction <c>z ~ N(0, I)</c> (one tensor per parameter) from a generator seeded with
/// <see cref="DirectionSeed"/> of the seed and the step number, so <c>z</c> is regenerated instead of stored and a
/// resumed run draws the same directions (the optimizer has no state). Then:</para>
/// <code>
/// θ += εz;  L+ = L(θ)
/// θ -= 2εz; L- = L(θ)
/// θ += εz
/// g = (L+ - L-) / 2ε
/// θ -= lr * (g * z + weightDecay * θ)
/// </code>
/// <para>The loss is evaluated through <see cref="OptimizerStepContext.EvaluateLoss"/> (no gradients, so the memory of
/// inference); the trainer reports <c>L+</c> as the step's loss, as MeZO's reference trainer does, and NaN as its
/// gradient norm. <see cref="TrainingOptions.MaxGradNorm"/> does not apply. When an evaluation is not finite the
/// perturbation is undone before the error propagates (up to floating-point rounding of <c>θ + εz - εz</c>). The loss
/// function must compute the same function each time it is called within a step (same batch).</para>
/// </remarks>
public sealed class MeZOOptimizer : PeftOptimizer
{
    /// <summary>The <see cref="Kind"/> of this optimizer.</summary>
    public const string KindName = "MeZO";

    /// <summary>Creates the optimizer.</summary>
    /// <param name="parameters">The parameters to update.</param>
    /// <param name="perturbationScale">ε, the size of the perturbation (finite, &gt; 0; MeZO uses 1e-3).</param>
    /// <param name="seed">Seed of the directions.</param>
    /// <param name="weightDecay">Weight decay applied with the update (finite, &gt;= 0).</param>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public MeZOOptimizer(IEnumerable<Parameter> parameters, double perturbationScale = 1e-3, long seed = 0, double weightDecay = 0)
        : base(parameters)
    {
        if (!double.IsFinite(perturbationScale) || perturbationScale <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(perturbationScale), perturbationScale, "MeZO's perturbation scale must be a finite number > 0.");
        }

        if (!double.IsFinite(weightDecay) || weightDecay < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "MeZO's weight decay must be a finite number >= 0.");
        }

        PerturbationScale = perturbationScale;
        Seed = seed;
        WeightDecay = weightDecay;
    }

    /// <summary>ε, the size of the perturbation.</summary>
    public double PerturbationScale { get; }

    /// <summary>The seed the directions derive from.</summary>
    public long Seed { get; }

    /// <summary>The weight decay applied with the update.</summary>
    public double WeightDecay { get; }

    /// <summary>The projected gradient <c>(L+ - L-) / 2ε</c> of the last step (NaN before the first).</summary>
    public double LastProjectedGradient { get; private set; } = double.NaN;

    /// <inheritdoc />
    public override string Kind => KindName;

    /// <inheritdoc />
    public override bool RequiresGradients => false;

    /// <summary>
    /// The seed of the generator that draws step <paramref name="step"/>'s direction: a SplitMix64 mix of
    /// <paramref name="seed"/> and <paramref name="step"/>, so neighbouring steps get unrelated directions.
    /// </summary>
    /// <param name="seed">The optimizer's <see cref="Seed"/>.</param>
    /// <param name="step">1-based step number.</param>
    /// <returns>The generator seed.</returns>
    public static ulong DirectionSeed(long seed, int step)
    {
        ulong z = unchecked((ulong)seed + ((ulong)step * 0x9E3779B97F4A7C15UL));
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }

    /// <summary>
    /// The direction <c>z</c> of step <paramref name="step"/>, one tensor per parameter (its shape, dtype and device),
    /// drawn in parameter order from a CPU generator seeded with <see cref="DirectionSeed"/>.
    /// </summary>
    /// <param name="step">1-based step number.</param>
    /// <returns>New tensors in the caller's dispose scope.</returns>
    public IReadOnlyList<Tensor> Direction(int step)
    {
        ThrowIfDisposed();
        using var generator = new Generator(DirectionSeed(Seed, step));
        var result = new Tensor[Parameters.Count];
        for (int i = 0; i < result.Length; i++)
        {
            var parameter = Parameters[i];
            result[i] = torch.randn(parameter.shape, dtype: parameter.dtype, generator: generator).to(parameter.device);
        }

        return result;
    }

    /// <inheritdoc />
    public override void Step(OptimizerStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        ThrowIfDisposed();
        double epsilon = PerturbationScale;
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var z = Direction(context.Step);

        double offset = 0; // where θ is now, in units of z
        double lossPlus, lossMinus;
        try
        {
            Move(z, epsilon);
            offset = epsilon;
            lossPlus = context.EvaluateLoss();
            Move(z, -2 * epsilon);
            offset = -epsilon;
            lossMinus = context.EvaluateLoss();
        }
        finally
        {
            if (offset != 0)
            {
                Move(z, -offset);
            }
        }

        double projected = (lossPlus - lossMinus) / (2 * epsilon);
        LastProjectedGradient = projected;
        double lr = context.LearningRate;
        for (int i = 0; i < z.Count; i++)
        {
            var parameter = Parameters[i];
            if (WeightDecay != 0)
            {
                parameter.mul_(1 - (lr * WeightDecay));
            }

            parameter.add_(z[i], alpha: -lr * projected);
        }
    }

    private void Move(IReadOnlyList<Tensor> z, double scale)
    {
        for (int i = 0; i < z.Count; i++)
        {
            Parameters[i].add_(z[i], alpha: scale);
        }
    }
}
