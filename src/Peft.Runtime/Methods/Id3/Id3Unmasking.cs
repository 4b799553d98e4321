using Peft.Training;
using Peft.Training.Checkpoints;
using Peft.Training.Masks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// ID³ (Agarwal et al., 2024): selective fine-tuning of chosen base weights whose trained set grows step by step. At each
/// unmasking step (<see cref="Id3Schedule"/>) the still-masked entries are ranked by the D³ importance
/// <c>|∇θ| / (|θ| + ε)^γ</c> computed from that step's raw gradients, and the set grows to <c>⌈B·k/T_u⌉</c> entries: the
/// highest scores plus a seeded random share (exploration). The set never shrinks; everything still masked stays
/// bit-identical (<see cref="ParameterMasks"/>). Not in PEFT: the trained entries leave as a <see cref="SparseDelta"/>.
/// </summary>
/// <example>
/// <code>
/// using var id3 = new Id3Unmasking(model, names, new Id3Options(Budget: 50_000, UnmaskingSteps: 20));
/// using var trainer = new AdapterTrainer(id3.Parameters, new TrainingOptions { TotalSteps = 500, Callbacks = [id3] });
/// </code>
/// </example>
/// <remarks>
/// Register it in <see cref="TrainingOptions.Callbacks"/> and train <see cref="Parameters"/> (plus any head) with a gradient
/// optimizer; it ranks entries in <see cref="ITrainingCallback.AfterBackward"/>, before it zeroes the masked gradients, so
/// an entry unmasked at step <c>t</c> is updated from step <c>t</c> on. Its masks and generator are part of checkpoints.
/// </remarks>
public sealed class Id3Unmasking : ICheckpointedCallback, IDisposable
{
    private const string GeneratorKey = "generator";
    private readonly ParameterMasks _masks;
    private readonly Generator _generator;

    /// <summary>Masks every entry of the weights <paramref name="weights"/> of <paramref name="model"/> (nothing trains yet).</summary>
    /// <param name="model">The model.</param>
    /// <param name="weights">Parameter names of the weights whose entries may be unmasked (<c>named_parameters()</c>).</param>
    /// <param name="options">Budget and schedule.</param>
    /// <exception cref="ArgumentException">A name is not a parameter of the model, none is given, or an option is out of range (the message names it).</exception>
    public Id3Unmasking(nn.Module model, IEnumerable<string> weights, Id3Options options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(options);
        var names = weights.Distinct(StringComparer.Ordinal).ToArray();
        if (names.Length == 0)
        {
            throw new ArgumentException("ID³ needs at least one weight to unmask; pass parameter names from model.named_parameters().", nameof(weights));
        }

        _masks = new ParameterMasks(model, StateName);
        var shapes = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        foreach (var name in names)
        {
            if (!shapes.TryGetValue(name, out var parameter))
            {
                _masks.Dispose();
                throw new ArgumentException($"ID³: the model has no parameter '{name}'; use names from model.named_parameters().", nameof(weights));
            }

            using var mask = torch.zeros_like(parameter, dtype: ScalarType.Bool);
            _masks.Add(name, mask);
        }

        try
        {
            options.Validate(_masks.TotalCount);
        }
        catch
        {
            _masks.Dispose();
            throw;
        }

        Options = options;
        _generator = new Generator(options.Seed);
    }

    /// <summary>The options.</summary>
    public Id3Options Options { get; }

    /// <inheritdoc />
    public string StateName => "id3";

    /// <summary>The masks (how many entries train, which, the base values).</summary>
    public ParameterMasks Masks => _masks;

    /// <summary>The weights to train (they require gradients).</summary>
    public IReadOnlyList<Parameter> Parameters => _masks.Parameters;

    /// <summary>At an unmasking step: grows the set from this step's raw gradients; then zeroes the masked gradients.</summary>
    /// <param name="context">The step.</param>
    public void AfterBackward(TrainingCallbackContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        long last = Id3Schedule.LastUnmaskingStep(Options.Interval, Options.UnmaskingSteps);
        if (context.Step == 1 && last > context.TotalSteps)
        {
            throw new InvalidOperationException(
                $"ID³'s last unmasking step ({last} = 1 + (UnmaskingSteps {Options.UnmaskingSteps} - 1) x Interval {Options.Interval}) is beyond "
                + $"TrainingOptions.TotalSteps = {context.TotalSteps}, so the budget would never be reached; lower Id3Options.UnmaskingSteps or Interval.");
        }

        int k = Id3Schedule.UnmaskingStepAt(context.Step, Options.Interval, Options.UnmaskingSteps);
        if (k > 0)
        {
            Grow(Id3Schedule.TargetCount(Options.Budget, k, Options.UnmaskingSteps));
        }

        _masks.AfterBackward(context);
    }

    /// <summary>Refuses an optimizer without gradients (ID³ ranks by gradients).</summary>
    /// <param name="context">The step.</param>
    public void BeforeStep(TrainingCallbackContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!context.Optimizer.RequiresGradients)
        {
            throw new InvalidOperationException($"ID³ ranks entries by their gradients, but the {context.Optimizer.Kind} optimizer computes none; use AdamW or SGD.");
        }
    }

    /// <summary>Writes the base values back into the masked entries.</summary>
    /// <param name="context">The step.</param>
    public void AfterStep(TrainingCallbackContext context) => _masks.AfterStep(context);

    /// <summary>
    /// Grows the unmasked set to <paramref name="target"/> entries from the current gradients: the exploited share by the
    /// highest D³ scores among the masked entries, the explored share uniformly among those still masked after it.
    /// </summary>
    /// <param name="target">The count to reach; nothing happens when it is not above the current count.</param>
    public void Grow(long target)
    {
        long add = Math.Min(target, _masks.TotalCount) - _masks.TrainedCount;
        if (add <= 0)
        {
            return;
        }

        var (exploit, explore) = Id3Schedule.Split(add, Options.ExplorationShare);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var names = _masks.Names;
        var scores = new List<Tensor>(names.Count);
        var sizes = new long[names.Count];
        for (int i = 0; i < names.Count; i++)
        {
            var weight = _masks.Parameters[i];
            var g = weight.grad is { } grad ? grad.detach().to_type(ScalarType.Float64).abs() : torch.zeros_like(weight, dtype: ScalarType.Float64);
            var score = g / (weight.detach().to_type(ScalarType.Float64).abs() + Options.Epsilon).pow(Options.Gamma);
            scores.Add(score.flatten().masked_fill(_masks.MaskOf(names[i]).flatten(), -1.0).cpu());
            sizes[i] = weight.numel();
        }

        var all = torch.cat(scores, 0);
        var chosen = new List<Tensor>();
        if (exploit > 0)
        {
            var top = all.topk((int)exploit).indexes;
            all.index_fill_(0, top, -1.0);
            chosen.Add(top);
        }

        if (explore > 0)
        {
            var keys = torch.rand(all.shape, ScalarType.Float64, generator: _generator).masked_fill(all.lt(0), -1.0);
            chosen.Add(keys.topk((int)explore).indexes);
        }

        var picked = torch.cat(chosen, 0);
        long offset = 0;
        for (int i = 0; i < names.Count; i++)
        {
            var inside = picked.ge(offset).logical_and(picked.lt(offset + sizes[i]));
            var local = picked.masked_select(inside) - offset;
            if (local.numel() > 0)
            {
                _masks.Unmask(names[i], local);
            }

            offset += sizes[i];
        }
    }

    /// <summary>The trained entries as a sparse delta against the base.</summary>
    /// <returns>A new delta.</returns>
    public SparseDelta Delta() => _masks.Delta();

    /// <inheritdoc />
    public IReadOnlyList<KeyValuePair<string, Tensor>> CheckpointState() =>
        _masks.CheckpointState().Append(new(GeneratorKey, _generator.get_state())).ToArray();

    /// <inheritdoc />
    public void RestoreCheckpointState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!state.TryGetValue(GeneratorKey, out var generator))
        {
            throw new ArgumentException("there is no state of ID³'s exploration generator.");
        }

        CheckpointValidation.EnsureGeneratorState(CheckpointStore.CallbacksFileName, StateName + "/" + GeneratorKey, generator);
        _masks.RestoreCheckpointState(state.Where(p => p.Key != GeneratorKey).ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal));
        _generator.set_state(generator);
    }

    /// <summary>Frees the masks, the kept base values and the generator.</summary>
    public void Dispose()
    {
        _masks.Dispose();
        _generator.Dispose();
    }
}
