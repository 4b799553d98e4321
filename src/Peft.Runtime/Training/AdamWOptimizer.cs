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

    private readonly AdamW _optimizer;
    private readonly AdamW.State[] _states;

    /// <summary>Creates the optimizer and allocates its state (zeros).</summary>
    /// <param name="parameters">The parameters to update.</param>
    /// <param name="learningRate">The initial learning rate; each <see cref="Step"/> sets the one it is given.</param>
    /// <param name="beta1">Decay rate of the first moment, in [0, 1).</param>
    /// <param name="beta2">Decay rate of the second moment, in [0, 1).</param>
    /// <param name="epsilon">Term added to the denominator, &gt; 0.</param>
    /// <param name="weightDecay">Decoupled weight decay: each step multiplies each parameter by <c>1 - lr * weightDecay</c>.</param>
    public AdamWOptimizer(IEnumerable<Parameter> parameters, double learningRate, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0)
        : base(parameters)
    {
        // AdamW allocates its state (exp_avg, exp_avg_sq) here, outside any caller dispose scope (TorchSharp keeps
        // optimizer state unregistered; a test guards this), so it lives exactly as long as the optimizer.
        _optimizer = torch.optim.AdamW(Parameters, learningRate, beta1, beta2, epsilon, weightDecay);
        var states = _optimizer.state_dict().State;
        if (states.Count != Parameters.Count)
        {
            _optimizer.Dispose();
            throw new InvalidOperationException($"TorchSharp's AdamW holds {states.Count} parameter states for {Parameters.Count} parameters.");
        }

        _states = new AdamW.State[states.Count];
        for (int i = 0; i < states.Count; i++)
        {
            if (states[i] is not AdamW.State adam || adam.exp_avg is null || adam.exp_avg_sq is null
                || !adam.exp_avg.shape.SequenceEqual(Parameters[i].shape))
            {
                _optimizer.Dispose();
                throw new InvalidOperationException($"TorchSharp's AdamW state of parameter {i} is not an allocated state matching the parameter.");
            }

            _states[i] = adam;
        }
    }

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
        foreach (var group in _optimizer.ParamGroups)
        {
            group.LearningRate = context.LearningRate;
        }

        _optimizer.step();
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
            _optimizer.Dispose();
        }
    }
}
