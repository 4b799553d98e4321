using System.Collections.ObjectModel;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>
/// Creates the optimizer of an <see cref="AdapterTrainer"/> (<see cref="TrainingOptions.Optimizer"/>).
/// </summary>
/// <param name="parameters">The parameters the trainer trains, in its order (<see cref="AdapterTrainer.Parameters"/>).
/// The optimizer must be created over exactly these, in this order.</param>
/// <param name="options">The trainer's validated options, for the hyper-parameters the optimizer reads from them
/// (<see cref="TrainingOptions.Beta1"/>, <see cref="TrainingOptions.WeightDecay"/>, ...).</param>
/// <returns>A new optimizer; the trainer owns and disposes it.</returns>
public delegate PeftOptimizer OptimizerFactory(IReadOnlyList<Parameter> parameters, TrainingOptions options);

/// <summary>
/// An optimizer driven by <see cref="AdapterTrainer"/>: one <see cref="Step"/> per training step, with the learning
/// rate of the schedule, after the trainer has computed (and clipped) the gradients. Its state is exposed by name so
/// that <see cref="Checkpoints.CheckpointStore"/> can save and restore any optimizer without knowing it.
/// </summary>
/// <remarks>
/// <para><b>State.</b> Each trained parameter <c>i</c> has the state tensors named by <see cref="StateNames"/>
/// (AdamW: <c>exp_avg</c>, <c>exp_avg_sq</c>) and the integer scalars named by <see cref="ScalarStateNames"/>
/// (AdamW: <c>step</c>). <see cref="GetState"/> returns the live tensor: it must exist from construction (allocate it
/// eagerly) and keep its shape, dtype and device, because a checkpoint is validated against it before anything is
/// restored. Checkpoints store them as <c>{parameter name}/{state name}</c>, and <see cref="Kind"/> names the optimizer
/// so that a checkpoint is never resumed with another one.</para>
/// <para><b>Gradients.</b> When <see cref="RequiresGradients"/> is true (the default) the trainer computes the loss,
/// back-propagates, clips and then calls <see cref="Step"/>; a parameter whose gradient is none (the loss did not reach
/// it) must be left alone. When it is false the trainer neither computes the loss nor back-propagates: the optimizer
/// evaluates the loss itself, as often as it needs, with <see cref="OptimizerStepContext.EvaluateLoss"/> (a
/// zeroth-order method such as <see cref="MeZOOptimizer"/>).</para>
/// </remarks>
public abstract class PeftOptimizer : IDisposable
{
    private readonly Parameter[] _parameters;

    /// <summary>Stores the parameters this optimizer updates.</summary>
    /// <param name="parameters">The parameters, in the trainer's order.</param>
    /// <exception cref="ArgumentNullException"><paramref name="parameters"/> or one of them is null.</exception>
    protected PeftOptimizer(IEnumerable<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _parameters = parameters.ToArray();
        if (Array.IndexOf(_parameters, null) >= 0)
        {
            throw new ArgumentNullException(nameof(parameters), "The parameter sequence contains a null parameter.");
        }

        Parameters = new ReadOnlyCollection<Parameter>(_parameters);
    }

    /// <summary>The parameters this optimizer updates; state is indexed by their position here.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>
    /// The optimizer's name (<c>AdamW</c>, <c>SGD</c>, <c>MeZO</c>), recorded in checkpoints: a checkpoint is resumed
    /// only by an optimizer of the same kind. Two optimizers whose state means different things need different kinds.
    /// </summary>
    public abstract string Kind { get; }

    /// <summary>
    /// Whether <see cref="Step"/> needs the gradients of the loss. False for an optimizer that evaluates the loss
    /// itself (<see cref="OptimizerStepContext.EvaluateLoss"/>): the trainer then runs no backward pass. Default true.
    /// </summary>
    public virtual bool RequiresGradients => true;

    /// <summary>
    /// Whether the optimizer applies per-parameter learning rates (<see cref="TrainingOptions.ParameterLearningRate"/>, read
    /// through <see cref="TrainingOptions.LearningRateScales"/> by its factory). The trainer refuses options that give some
    /// parameter its own rate when this is false. Default false.
    /// </summary>
    public virtual bool SupportsLearningRateScales => false;

    /// <summary>Names of the state tensors each parameter has (for example <c>exp_avg</c>); empty when there are none.</summary>
    public virtual IReadOnlyList<string> StateNames => Array.Empty<string>();

    /// <summary>Names of the integer scalars each parameter has (for example <c>step</c>); empty when there are none.</summary>
    public virtual IReadOnlyList<string> ScalarStateNames => Array.Empty<string>();

    /// <summary>Whether <see cref="Dispose()"/> was called.</summary>
    protected bool IsDisposed { get; private set; }

    /// <summary>Applies one update with the learning rate of <paramref name="context"/>.</summary>
    /// <param name="context">The step number, its learning rate and a way to evaluate the loss.</param>
    public abstract void Step(OptimizerStepContext context);

    /// <summary>The live state tensor <paramref name="name"/> (one of <see cref="StateNames"/>) of parameter <paramref name="parameterIndex"/>.</summary>
    /// <param name="parameterIndex">Index into <see cref="Parameters"/>.</param>
    /// <param name="name">One of <see cref="StateNames"/>.</param>
    /// <returns>The tensor the optimizer updates (not a copy); do not dispose it.</returns>
    /// <exception cref="ArgumentException">The optimizer has no such state.</exception>
    public virtual Tensor GetState(int parameterIndex, string name) => throw UnknownState(name, StateNames);

    /// <summary>
    /// Restores state tensor <paramref name="name"/> of parameter <paramref name="parameterIndex"/> from
    /// <paramref name="value"/>, which has the live tensor's shape and dtype. The default copies it into
    /// <see cref="GetState"/>'s tensor without recording gradients.
    /// </summary>
    /// <param name="parameterIndex">Index into <see cref="Parameters"/>.</param>
    /// <param name="name">One of <see cref="StateNames"/>.</param>
    /// <param name="value">The saved value; not kept (copy it).</param>
    public virtual void LoadState(int parameterIndex, string name, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        using var _ = torch.no_grad();
        GetState(parameterIndex, name).copy_(value);
    }

    /// <summary>The integer scalar <paramref name="name"/> (one of <see cref="ScalarStateNames"/>) of parameter <paramref name="parameterIndex"/>.</summary>
    /// <param name="parameterIndex">Index into <see cref="Parameters"/>.</param>
    /// <param name="name">One of <see cref="ScalarStateNames"/>.</param>
    /// <returns>The value.</returns>
    /// <exception cref="ArgumentException">The optimizer has no such scalar.</exception>
    public virtual long GetScalarState(int parameterIndex, string name) => throw UnknownState(name, ScalarStateNames);

    /// <summary>Restores the integer scalar <paramref name="name"/> of parameter <paramref name="parameterIndex"/>.</summary>
    /// <param name="parameterIndex">Index into <see cref="Parameters"/>.</param>
    /// <param name="name">One of <see cref="ScalarStateNames"/>.</param>
    /// <param name="value">The saved value.</param>
    /// <exception cref="ArgumentException">The optimizer has no such scalar.</exception>
    public virtual void SetScalarState(int parameterIndex, string name, long value) => throw UnknownState(name, ScalarStateNames);

    /// <summary>Frees the optimizer's state. The parameters belong to the caller and are not disposed.</summary>
    public void Dispose()
    {
        if (IsDisposed)
        {
            return;
        }

        IsDisposed = true;
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the state tensors; called once by <see cref="Dispose()"/>.</summary>
    /// <param name="disposing">True when called from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
    }

    /// <summary>Throws <see cref="ObjectDisposedException"/> after <see cref="Dispose()"/>.</summary>
    protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);

    /// <summary>Checks a parameter index for the state accessors.</summary>
    /// <param name="parameterIndex">The index to check.</param>
    /// <exception cref="ArgumentOutOfRangeException">It is not an index into <see cref="Parameters"/>.</exception>
    protected void CheckIndex(int parameterIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(parameterIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(parameterIndex, _parameters.Length);
    }

    /// <summary>The exception for a state name the optimizer does not have.</summary>
    /// <param name="name">The name asked for.</param>
    /// <param name="known">The names it has.</param>
    /// <returns>An <see cref="ArgumentException"/> naming the optimizer and its states.</returns>
    protected ArgumentException UnknownState(string name, IReadOnlyList<string> known) =>
        new($"The {Kind} optimizer has no state '{name}'; it has: {(known.Count == 0 ? "none" : string.Join(", ", known))}.", nameof(name));
}
