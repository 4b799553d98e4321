using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>
/// Stochastic gradient descent with momentum, PyTorch's <c>torch.optim.SGD</c> update without dampening
/// (<see cref="Optimizers.Sgd"/>). For each parameter <c>p</c> with gradient <c>g</c>:
/// <c>g += weightDecay * p</c>; with momentum <c>μ &gt; 0</c>, <c>buf = μ * buf + g</c> and <c>g = buf</c>
/// (Nesterov: <c>g = g + μ * buf</c>); then <c>p -= lr * g</c>.
/// </summary>
/// <remarks>
/// State per parameter: the tensor <c>momentum_buffer</c> (none without momentum). It is allocated as zeros when the
/// optimizer is created, so the first step gives <c>buf = g</c>, as PyTorch's lazily created buffer does. A parameter
/// without a gradient is left alone, its buffer included. Weight decay is the classic L2 term added to the gradient
/// (after the trainer's clipping), not AdamW's decoupled decay.
/// </remarks>
public sealed class SgdOptimizer : PeftOptimizer
{
    /// <summary>The <see cref="Kind"/> of this optimizer.</summary>
    public const string KindName = "SGD";

    private const string MomentumBuffer = "momentum_buffer";
    private static readonly string[] s_stateNames = [MomentumBuffer];

    private readonly Tensor[] _buffers;

    /// <summary>Creates the optimizer and, with momentum, its zero momentum buffers.</summary>
    /// <param name="parameters">The parameters to update.</param>
    /// <param name="momentum">Momentum factor <c>μ</c> in [0, 1); 0 is plain SGD (and keeps no state).</param>
    /// <param name="weightDecay">L2 penalty added to the gradient (finite, &gt;= 0).</param>
    /// <param name="nesterov">Nesterov momentum (needs <paramref name="momentum"/> &gt; 0).</param>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public SgdOptimizer(IEnumerable<Parameter> parameters, double momentum = 0.9, double weightDecay = 0, bool nesterov = false)
        : base(parameters)
    {
        if (!(momentum >= 0 && momentum < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "SGD momentum must be in [0, 1).");
        }

        if (!double.IsFinite(weightDecay) || weightDecay < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "SGD weight decay must be a finite number >= 0.");
        }

        if (nesterov && momentum == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "Nesterov momentum needs a momentum > 0.");
        }

        Momentum = momentum;
        WeightDecay = weightDecay;
        Nesterov = nesterov;
        _buffers = new Tensor[momentum > 0 ? Parameters.Count : 0];
        using var _ = torch.no_grad();
        for (int i = 0; i < _buffers.Length; i++)
        {
            // Outside any caller dispose scope: the buffers live as long as the optimizer.
            _buffers[i] = torch.zeros_like(Parameters[i]).DetachFromDisposeScope();
        }
    }

    /// <summary>The momentum factor.</summary>
    public double Momentum { get; }

    /// <summary>The L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; }

    /// <summary>Whether Nesterov momentum is used.</summary>
    public bool Nesterov { get; }

    /// <inheritdoc />
    public override string Kind => KindName;

    /// <inheritdoc />
    public override IReadOnlyList<string> StateNames => _buffers.Length > 0 ? s_stateNames : Array.Empty<string>();

    /// <inheritdoc />
    public override void Step(OptimizerStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        ThrowIfDisposed();
        double lr = context.LearningRate;
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        for (int i = 0; i < Parameters.Count; i++)
        {
            var parameter = Parameters[i];
            var grad = parameter.grad;
            if (grad is null)
            {
                continue;
            }

            if (WeightDecay != 0)
            {
                grad = grad.add(parameter, alpha: WeightDecay);
            }

            if (_buffers.Length > 0)
            {
                var buffer = _buffers[i];
                buffer.mul_(Momentum).add_(grad);
                grad = Nesterov ? grad.add(buffer, alpha: Momentum) : buffer;
            }

            parameter.add_(grad, alpha: -lr);
        }
    }

    /// <inheritdoc />
    public override Tensor GetState(int parameterIndex, string name)
    {
        ThrowIfDisposed();
        CheckIndex(parameterIndex);
        return name == MomentumBuffer && _buffers.Length > 0 ? _buffers[parameterIndex] : throw UnknownState(name, StateNames);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var buffer in _buffers)
            {
                buffer.Dispose();
            }
        }
    }
}
