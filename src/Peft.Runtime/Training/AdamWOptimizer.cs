using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>
/// AdamW (decoupled weight decay, bias-corrected moments), TorchSharp's <c>torch.optim.AdamW</c>: the trainer's
/// default optimizer (<see cref="Optimizers.AdamW"/>). State per parameter: tensors <c>exp_avg</c> and
/// <c>exp_avg_sq</c>, scalar <c>step</c>. A parameter without a gradient is left alone (its step does not advance).
/// </summary>
public sealed class AdamWOptimizer : PeftOptimizer
{
    /// <summary>The <see cref="Kind"/> of this optimizer, also assumed for checkpoints that do not name one.</summary>
    public const string KindName = "AdamW";

    private static readonly string[] s_stateNames = ["exp_avg", "exp_avg_sq"];
    private static readonly string[] s_scalarNames = ["step"];

    private readonly List<(AdamW Optimizer, double Scale)> _groups = new();
    private readonly AdamW.State[] _states;

    /// <summary>Creates the optimizer and allocates its state (zeros).</summary>
    /// <param name="parameters">The parameters to update.</param>
    /// <param name="learningRate">The initial learning rate; each <see cref="Step"/> sets the one it is given.</param>
    /// <param name="beta1">Decay rate of the first moment, in [0, 1).</param>
    /// <param name="beta2">Decay rate of the second moment, in [0, 1).</param>
    /// <param name="epsilon">Term added to the denominator, &gt; 0.</param>
    /// <param name="weightDecay">Decoupled weight decay: each step multiplies each parameter by <c>1 - lr * weightDecay</c>.</param>
    /// <param name="learningRateScales">Each parameter's learning rate as a multiple of the step's
    /// (<see cref="TrainingOptions.LearningRateScales"/>), in the order of <paramref name="parameters"/>; null for 1 everywhere.
    /// Parameters of one scale form one TorchSharp AdamW; the state is the same per parameter either way.</param>
    /// <exception cref="ArgumentException"><paramref name="learningRateScales"/> has another length than the parameters, or a
    /// value that is not finite and &gt; 0.</exception>
    public AdamWOptimizer(IEnumerable<Parameter> parameters, double learningRate, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0,
        IReadOnlyList<double>? learningRateScales = null)
        : base(parameters)
    {
        if (learningRateScales is not null
            && (learningRateScales.Count != Parameters.Count || learningRateScales.Any(s => !double.IsFinite(s) || s <= 0)))
        {
            throw new ArgumentException(
                $"Expected one finite learning-rate scale > 0 per parameter ({Parameters.Count}), got {learningRateScales.Count}: {string.Join(", ", learningRateScales.Take(8))}.",
                nameof(learningRateScales));
        }

        _states = new AdamW.State[Parameters.Count];
        var order = Enumerable.Range(0, Parameters.Count).GroupBy(i => learningRateScales?[i] ?? 1.0).ToList();
        try
        {
            foreach (var group in order)
            {
                var indices = group.ToArray();

                // AdamW allocates its state (exp_avg, exp_avg_sq) here, outside any caller dispose scope (TorchSharp keeps
                // optimizer state unregistered; a test guards this), so it lives exactly as long as the optimizer.
                var optimizer = torch.optim.AdamW(indices.Select(i => Parameters[i]), learningRate * group.Key, beta1, beta2, epsilon, weightDecay);
                _groups.Add((optimizer, group.Key));
                var states = optimizer.state_dict().State;
                if (states.Count != indices.Length)
                {
                    throw new InvalidOperationException($"TorchSharp's AdamW holds {states.Count} parameter states for {indices.Length} parameters.");
                }

                for (int k = 0; k < indices.Length; k++)
                {
                    int i = indices[k];
                    if (states[k] is not AdamW.State adam || adam.exp_avg is null || adam.exp_avg_sq is null
                        || !adam.exp_avg.shape.SequenceEqual(Parameters[i].shape))
                    {
                        throw new InvalidOperationException($"TorchSharp's AdamW state of parameter {i} is not an allocated state matching the parameter.");
                    }

                    _states[i] = adam;
                }
            }
        }
        catch
        {
            foreach (var (optimizer, _) in _groups) optimizer.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public override bool SupportsLearningRateScales => true;

    /// <inheritdoc />
    public override string Kind => KindName;

    /// <inheritdoc />
    public override IReadOnlyList<string> StateNames => s_stateNames;

    /// <inheritdoc />
    public override IReadOnlyList<string> ScalarStateNames => s_scalarNames;

    /// <inheritdoc />
    public override void Step(OptimizerStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        ThrowIfDisposed();
        foreach (var (optimizer, scale) in _groups)
        {
            foreach (var group in optimizer.ParamGroups)
            {
                group.LearningRate = context.LearningRate * scale;
            }

            optimizer.step();
        }
    }

    /// <inheritdoc />
    public override Tensor GetState(int parameterIndex, string name)
    {
        ThrowIfDisposed();
        CheckIndex(parameterIndex);
        return name switch
        {
            "exp_avg" => _states[parameterIndex].exp_avg,
            "exp_avg_sq" => _states[parameterIndex].exp_avg_sq,
            _ => throw UnknownState(name, s_stateNames),
        };
    }

    /// <inheritdoc />
    public override long GetScalarState(int parameterIndex, string name)
    {
        ThrowIfDisposed();
        CheckIndex(parameterIndex);
        return name == "step" ? _states[parameterIndex].step : throw UnknownState(name, s_scalarNames);
    }

    /// <inheritdoc />
    public override void SetScalarState(int parameterIndex, string name, long value)
    {
        ThrowIfDisposed();
        CheckIndex(parameterIndex);
        if (name != "step")
        {
            throw UnknownState(name, s_scalarNames);
        }

        ArgumentOutOfRangeException.ThrowIfNegative(value);
        _states[parameterIndex].step = value;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var (optimizer, _) in _groups) optimizer.Dispose();
        }
    }
}
