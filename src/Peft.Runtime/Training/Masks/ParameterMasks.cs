using System.Globalization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training.Masks;

/// <summary>
/// Trains chosen entries of a model's existing (base) weights and nothing else of them: a boolean mask per weight,
/// true where the entry trains. Register it in <see cref="TrainingOptions.Callbacks"/> and train the masked weights
/// (<see cref="Parameters"/>, which <see cref="Add"/> sets to require gradients) with any gradient optimizer.
/// </summary>
/// <remarks>
/// <para><b>Guarantee.</b> Masked (false) entries are bit-identical to their values when the weight was added, after any
/// number of optimizer steps: <see cref="ITrainingCallback.AfterBackward"/> zeroes their gradients (so they count in
/// neither the gradient norm nor the clipping, and AdamW's moments of them stay exactly zero), and
/// <see cref="ITrainingCallback.AfterStep"/> writes the kept values back into them, so that nothing the optimizer does to
/// a whole tensor (AdamW's decoupled weight decay <c>θ ← θ(1 - lr·λ)</c>, a momentum buffer) ever moves them. Weight decay
/// still applies to the trained entries. The kept values are a copy of each masked weight (the memory of the weight
/// once more), which is also the base the <see cref="SparseDelta"/> is taken against.</para>
/// <para><b>Growing masks.</b> <see cref="Unmask"/> only adds entries (ID³'s incremental unmasking); an entry unmasked
/// late starts with zero AdamW moments (its gradients were zero) but the parameter's bias correction counts every
/// step.</para>
/// <para><b>Checkpoints.</b> The masks are part of a training checkpoint (<see cref="ICheckpointedCallback"/>,
/// <c>{StateName}/{weight name}</c>); the kept base values are not (the resuming process loads the same base weights).</para>
/// </remarks>
public sealed class ParameterMasks : ICheckpointedCallback, IDisposable
{
    private readonly Dictionary<string, Parameter> _byName = new(StringComparer.Ordinal);
    private readonly List<Entry> _entries = [];
    private bool _disposed;

    /// <summary>Creates empty masks over <paramref name="model"/>'s parameters (named as in its <c>named_parameters()</c>).</summary>
    /// <param name="model">The model whose weights are masked.</param>
    /// <param name="stateName">The name of this callback's state in checkpoints.</param>
    public ParameterMasks(nn.Module model, string stateName = "masks")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(stateName);
        if (stateName.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"The state name '{stateName}' contains '/'; choose a name without it.", nameof(stateName));
        }

        StateName = stateName;
        foreach (var (name, parameter) in model.named_parameters())
        {
            _byName.TryAdd(name, parameter);
        }
    }

    /// <inheritdoc />
    public string StateName { get; }

    /// <summary>The masked weights' names, in the order they were added.</summary>
    public IReadOnlyList<string> Names => _entries.Select(e => e.Name).ToArray();

    /// <summary>The masked weights, in the order they were added: give these to the trainer (they require gradients).</summary>
    public IReadOnlyList<Parameter> Parameters => _entries.Select(e => e.Parameter).ToArray();

    /// <summary>How many entries train, over all weights.</summary>
    public long TrainedCount => _entries.Sum(e => e.Count);

    /// <summary>How many entries the masked weights have, over all weights.</summary>
    public long TotalCount => _entries.Sum(e => e.Parameter.numel());

    /// <summary>
    /// Masks the weight <paramref name="name"/>: only the entries where <paramref name="mask"/> is true train. The weight's
    /// current values are kept as its base; it is set to require gradients.
    /// </summary>
    /// <param name="name">A parameter name of the model (<c>encoder.layers.0.attention.q.weight</c>).</param>
    /// <param name="mask">A boolean tensor of the weight's shape (all false: the weight trains nothing yet).</param>
    /// <exception cref="ArgumentException">The model has no such parameter, it is masked already, or the mask has another shape or is not boolean.</exception>
    public void Add(string name, Tensor mask)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(mask);
        var parameter = Find(name);
        if (_entries.Any(e => e.Name == name))
        {
            throw new ArgumentException($"The weight '{name}' is masked already; grow its mask with Unmask.", nameof(name));
        }

        CheckMask(name, mask, parameter);
        using var _ = torch.no_grad();
        var kept = parameter.detach().clone().DetachFromDisposeScope();
        var own = mask.to(parameter.device).clone().DetachFromDisposeScope();
        _entries.Add(new Entry(name, parameter, kept, own) { Count = own.sum().ToInt64() });
        parameter.requires_grad = true;
    }

    /// <summary>The live mask of weight <paramref name="name"/> (do not change or dispose it; use <see cref="Unmask"/>).</summary>
    /// <param name="name">A masked weight.</param>
    /// <returns>The boolean mask.</returns>
    public Tensor MaskOf(string name) => Get(name).Mask;

    /// <summary>The base values of weight <paramref name="name"/> (its values when it was added).</summary>
    /// <param name="name">A masked weight.</param>
    /// <returns>The kept tensor (do not change or dispose it).</returns>
    public Tensor BaseOf(string name) => Get(name).Base;

    /// <summary>How many entries of weight <paramref name="name"/> train.</summary>
    /// <param name="name">A masked weight.</param>
    /// <returns>The count of true entries.</returns>
    public long CountOf(string name) => Get(name).Count;

    /// <summary>Adds the entries at <paramref name="flatIndices"/> (row-major positions) of weight <paramref name="name"/> to the trained set; a mask never shrinks.</summary>
    /// <param name="name">A masked weight.</param>
    /// <param name="flatIndices">Int64 positions in [0, numel).</param>
    /// <exception cref="ArgumentException">The weight is not masked, or an index is out of range.</exception>
    public void Unmask(string name, Tensor flatIndices)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(flatIndices);
        var entry = Get(name);
        using var scope = torch.NewDisposeScope();
        var indices = flatIndices.to_type(ScalarType.Int64).to(entry.Mask.device).flatten();
        long numel = entry.Parameter.numel();
        if (indices.numel() > 0 && (indices.min().ToInt64() < 0 || indices.max().ToInt64() >= numel))
        {
            throw new ArgumentException($"An index to unmask in '{name}' is outside [0, {numel}).", nameof(flatIndices));
        }

        entry.Mask.view(-1).index_fill_(0, indices, true);
        entry.Count = entry.Mask.sum().ToInt64();
    }

    /// <summary>Zeroes the gradients of the masked entries.</summary>
    /// <param name="context">The step.</param>
    public void AfterBackward(TrainingCallbackContext context)
    {
        foreach (var entry in _entries)
        {
            entry.Parameter.grad?.masked_fill_(entry.Mask.logical_not(), 0);
        }
    }

    /// <summary>Writes the kept values back into the masked entries, undoing anything the optimizer did to them.</summary>
    /// <param name="context">The step.</param>
    public void AfterStep(TrainingCallbackContext context) => RestoreMasked();

    /// <summary>Writes the kept base values into every masked (false) entry of every weight.</summary>
    public void RestoreMasked()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        foreach (var entry in _entries)
        {
            entry.Parameter.copy_(torch.where(entry.Mask, entry.Parameter, entry.Base));
        }
    }

    /// <inheritdoc />
    public IReadOnlyList<KeyValuePair<string, Tensor>> CheckpointState() =>
        _entries.Select(e => new KeyValuePair<string, Tensor>(e.Name, e.Mask)).ToArray();

    /// <inheritdoc />
    public void RestoreCheckpointState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        foreach (var entry in _entries)
        {
            if (!state.TryGetValue(entry.Name, out var mask))
            {
                throw new ArgumentException($"there is no mask for the weight '{entry.Name}'.");
            }

            CheckMask(entry.Name, mask, entry.Parameter);
        }

        if (state.Keys.FirstOrDefault(k => _entries.All(e => e.Name != k)) is { } extra)
        {
            throw new ArgumentException($"it has a mask for '{extra}', which this run does not mask.");
        }

        foreach (var entry in _entries)
        {
            entry.Mask.copy_(state[entry.Name]);
            entry.Count = entry.Mask.sum().ToInt64();
        }
    }

    /// <summary>The trained entries as a sparse delta against the kept base values (<see cref="SparseDelta.Capture"/>).</summary>
    /// <returns>A new delta; the caller disposes it.</returns>
    public SparseDelta Delta()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return SparseDelta.Capture(_entries.Select(e => (e.Name, (Tensor)e.Parameter, e.Base, e.Mask)));
    }

    /// <summary>Frees the masks and the kept base values (the model's weights stay).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var entry in _entries)
        {
            entry.Base.Dispose();
            entry.Mask.Dispose();
        }
    }

    private Parameter Find(string name) =>
        _byName.TryGetValue(name, out var parameter)
            ? parameter
            : throw new ArgumentException(
                $"The model has no parameter '{name}'; use a name from its named_parameters() (for example '{_byName.Keys.FirstOrDefault()}').", nameof(name));

    private Entry Get(string name) =>
        _entries.FirstOrDefault(e => e.Name == name)
        ?? throw new ArgumentException($"The weight '{name}' is not masked; add it with Add(name, mask) first.", nameof(name));

    private static void CheckMask(string name, Tensor mask, Parameter parameter)
    {
        if (mask.dtype != ScalarType.Bool || !mask.shape.SequenceEqual(parameter.shape))
        {
            throw new ArgumentException(string.Format(
                CultureInfo.InvariantCulture,
                "The mask of '{0}' is {1} [{2}]; it must be a Bool tensor of the weight's shape [{3}].",
                name,
                mask.dtype,
                string.Join(", ", mask.shape),
                string.Join(", ", parameter.shape)));
        }
    }

    private sealed record Entry(string Name, Parameter Parameter, Tensor Base, Tensor Mask)
    {
        public long Count { get; set; }
    }
}
