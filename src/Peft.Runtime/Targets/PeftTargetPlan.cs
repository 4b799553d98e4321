namespace Peft;

/// <summary>
/// The validated outcome of resolving a <see cref="PeftTargets"/> against a model: the full dotted names of the layers
/// that get a new adapter, with the options each gets. Generated <see cref="IPeftTargetable.ApplyPeftTargets"/> code asks
/// it which of its members to adapt; build it with <see cref="PeftTargeting.ResolveTargets"/>.
/// </summary>
public sealed class PeftTargetPlan
{
    private readonly Dictionary<string, PeftAdapterOptions> _selected;
    private readonly HashSet<string> _applied = new(StringComparer.Ordinal);

    internal PeftTargetPlan(string adapterName, IReadOnlyList<(string Path, PeftAdapterOptions Options)> selected, IReadOnlyList<string> reused)
    {
        AdapterName = adapterName;
        Selected = selected.Select(s => s.Path).ToArray();
        Reused = reused;
        _selected = selected.ToDictionary(s => s.Path, s => s.Options, StringComparer.Ordinal);
    }

    /// <summary>The adapter name the plan adds.</summary>
    public string AdapterName { get; }

    /// <summary>The full names of the layers that get the adapter, in module-tree order.</summary>
    public IReadOnlyList<string> Selected { get; }

    /// <summary>Targeted layers that already had an equal adapter of this name (only when loading an adapter directory), left as they are.</summary>
    public IReadOnlyList<string> Reused { get; }

    /// <summary>The layers adapted so far by <see cref="Adapt"/>.</summary>
    internal IReadOnlyCollection<string> Applied => _applied;

    /// <summary>Whether the member with full dotted name <paramref name="fullName"/> gets the adapter (called by generated code).</summary>
    /// <param name="fullName">The member's full dotted name.</param>
    public bool Selects(string fullName) => _selected.ContainsKey(fullName) && !_applied.Contains(fullName);

    /// <summary>Adds the planned adapter to <paramref name="layer"/>, the wrapped layer of member <paramref name="fullName"/> (called by generated code).</summary>
    /// <param name="layer">The wrapper returned by <see cref="PeftLayers.Wrap"/>.</param>
    /// <param name="fullName">The member's full dotted name.</param>
    /// <returns><paramref name="layer"/>.</returns>
    /// <exception cref="PeftConfigurationException">The plan does not select <paramref name="fullName"/>.</exception>
    public AdaptedLayer Adapt(AdaptedLayer layer, string fullName)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(fullName);
        if (!_selected.TryGetValue(fullName, out var options) || !_applied.Add(fullName))
            throw new PeftConfigurationException($"The target plan does not select '{fullName}' (or adapted it already).", fullName, AdapterName);
        return layer.WithAdapter(AdapterName, options);
    }
}
