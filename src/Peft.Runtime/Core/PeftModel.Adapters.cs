using static TorchSharp.torch;

namespace Peft;

public static partial class PeftModel
{
    /// <summary>
    /// Merges adapters into the base parameters of every adapted layer (<c>W += ΔW</c> for additive methods; each method's
    /// own rule otherwise): the named adapter where a layer has it, or each layer's active adapters when
    /// <paramref name="adapterName"/> is null. A merged layer's forward costs exactly the base forward. Adapters that cannot
    /// be merged (prompts) are left as they are.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="adapterName">The adapter to merge, or null for the active adapters.</param>
    /// <param name="safeMerge">Check each merged weight for NaN/infinity before committing it (layers merged before a
    /// failing layer stay merged).</param>
    /// <exception cref="PeftConfigurationException">No layer has the named adapter, or a class declares adapters its
    /// constructor never created (it did not call the generated <c>InitializePeft()</c>; PEFT0013).</exception>
    /// <exception cref="InvalidOperationException"><paramref name="safeMerge"/> found NaN or infinity.</exception>
    /// <exception cref="PeftConfigurationException">The adapter to merge (or an active one, when <paramref name="adapterName"/> is null)
    /// is inserted at a block's sub-layer (<see cref="InsertedAdapter"/>: a bottleneck adapter), which no weight can absorb;
    /// nothing is merged then.</exception>
    public static void Merge(this nn.Module root, string? adapterName = null, bool safeMerge = true)
    {
        ArgumentNullException.ThrowIfNull(root);
        EnsureInitialized(root);
        RefuseInsertedMerge(root, adapterName);
        if (adapterName is not null)
        {
            EnsureExists(root, adapterName);
        }

        foreach (var (_, layer) in root.AdaptedLayers())
        {
            if (adapterName is null)
            {
                layer.Merge(null, safeMerge);
            }
            else if (layer.HasAdapter(adapterName))
            {
                layer.Merge(adapterName, safeMerge);
            }
        }
    }

    /// <summary>
    /// Runs the base-dependent initialisation of every adapter again on the current base weights
    /// (<see cref="AdaptedLayer.ReinitializeFromBase"/> on each adapted layer): call it after loading a base checkpoint into a
    /// model whose adapters were created before (generated code creates them in the constructor). DoRA's magnitude is taken
    /// from the loaded weights; PiSSA and OLoRA take the loaded weight as the original and leave its residual in the base.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <exception cref="PeftConfigurationException">A layer has merged adapters, or still holds the residual a PiSSA/OLoRA adapter
    /// left (nothing was loaded since), or a class declares adapters its constructor never created.</exception>
    public static void ReinitializeFromBase(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        foreach (var node in ModuleTree.Walk(root))
        {
            if (node.Module is IPeftModule peft)
            {
                EnsureDeclaredAdaptersAreWrapped(node.Module, peft.PeftDescriptor);
            }
        }

        var layers = root.AdaptedLayers().ToList();
        foreach (var (_, layer) in layers)
        {
            if (layer.IsMerged)
            {
                throw new PeftConfigurationException(
                    $"Member '{layer.MemberName}' has merged adapters ({string.Join(", ", layer.MergedAdapters)}); call model.Unmerge() before re-initialising adapters from the base weights.",
                    layer.MemberName, null);
            }
        }

        foreach (var (_, layer) in layers) layer.ReinitializeFromBase();
    }

    /// <summary>
    /// Takes merged adapters out of the base parameters: the named adapter where merged, or every merged adapter (in reverse
    /// merge order) when <paramref name="adapterName"/> is null.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="adapterName">The adapter to unmerge, or null for all merged adapters.</param>
    /// <exception cref="PeftConfigurationException">No layer has the named adapter.</exception>
    public static void Unmerge(this nn.Module root, string? adapterName = null)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (adapterName is not null)
        {
            EnsureExists(root, adapterName);
        }

        foreach (var (_, layer) in root.AdaptedLayers())
        {
            if (adapterName is null)
            {
                layer.Unmerge();
            }
            else if (layer.HasAdapter(adapterName))
            {
                layer.Unmerge(adapterName);
            }
        }
    }

    /// <summary>
    /// Makes <paramref name="adapterName"/> the only active adapter on every layer that has it; layers without it run
    /// their base computation (PEFT's <c>set_adapter</c>). Merged adapters that become inactive are unmerged. Then
    /// re-applies <see cref="ApplyTrainability"/>, so only the active adapter trains.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="adapterName">The adapter to activate.</param>
    /// <exception cref="PeftConfigurationException">No layer has an adapter with that name.</exception>
    public static void SetActiveAdapter(this nn.Module root, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(adapterName);
        root.SetActiveAdapters(adapterName);
    }

    /// <summary>
    /// Activates several adapters at once: each layer applies those of <paramref name="adapterNames"/> it has (a linear
    /// layer composes them by capability); a prompt layer may have at most one of them; inserted adapters (bottleneck) run
    /// when their name is among them and stop otherwise. Then re-applies
    /// <see cref="ApplyTrainability"/>.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="adapterNames">The adapters to activate.</param>
    /// <exception cref="PeftConfigurationException">A name exists on no layer, or a prompt layer has two of them.</exception>
    public static void SetActiveAdapters(this nn.Module root, params string[] adapterNames)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(adapterNames);
        foreach (var name in adapterNames)
        {
            EnsureExists(root, name);
        }

        // Check every layer's new set before changing any (a prompt layer takes one prompt).
        var plan = root.AdaptedLayers()
            .Select(l => (l.Layer, Names: adapterNames.Where(l.Layer.HasAdapter).Distinct(StringComparer.Ordinal).ToArray()))
            .ToList();
        foreach (var (layer, names) in plan)
        {
            if (layer is AdaptedEmbedding && names.Length > 1)
            {
                throw new PeftConfigurationException(
                    $"Member '{layer.MemberName}' can prepend only one prompt, but adapters {string.Join(", ", names.Select(n => $"'{n}'"))} were all requested. Activate one of them.",
                    layer.MemberName, names[1]);
            }
        }

        foreach (var (layer, names) in plan)
        {
            layer.SetActiveAdapters(names);
        }

        foreach (var (_, inserted) in root.InsertedAdapters())
        {
            inserted.Active = adapterNames.Contains(inserted.AdapterName, StringComparer.Ordinal);
        }

        root.ApplyTrainability();
    }

    /// <summary>
    /// Disables every adapter of the tree until the returned scope is disposed (PEFT's <c>disable_adapter()</c>
    /// context): the model computes as the base model; merged adapters are unmerged and inserted adapters (bottleneck) are
    /// skipped. Disposing restores each layer's and each inserted adapter's previous setting, and trainability.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <returns>The scope; dispose it to re-enable the adapters.</returns>
    public static IDisposable DisableAdapters(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var layers = root.AdaptedLayers().Select(l => (l.Layer, l.Layer.AdaptersDisabled)).ToList();
        var inserted = root.InsertedAdapters().Select(a => (a.Adapter, a.Adapter.Active)).ToList();
        foreach (var (layer, _) in layers)
        {
            layer.AdaptersDisabled = true;
        }

        foreach (var (adapter, _) in inserted)
        {
            adapter.Active = false;
        }

        root.ApplyTrainability();
        return new RestoreScope(() =>
        {
            foreach (var (layer, was) in layers)
            {
                layer.AdaptersDisabled = was;
            }

            foreach (var (adapter, was) in inserted)
            {
                adapter.Active = was;
            }

            root.ApplyTrainability();
        });
    }

    /// <summary>The distinct adapter names present in the tree, in discovery order.</summary>
    /// <param name="root">The model.</param>
    /// <returns>The adapter names.</returns>
    public static IReadOnlyList<string> AdapterNames(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var names = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, layer) in root.AdaptedLayers())
        {
            foreach (var adapter in layer.Adapters)
            {
                if (seen.Add(adapter.AdapterName))
                {
                    names.Add(adapter.AdapterName);
                }
            }
        }

        foreach (var (_, inserted) in root.InsertedAdapters())
        {
            if (seen.Add(inserted.AdapterName))
            {
                names.Add(inserted.AdapterName);
            }
        }

        return names;
    }

    /// <summary>
    /// Deletes the named adapter from every layer that has it (unmerging it first where merged) and from every block's
    /// insertion points (bottleneck adapters); on layers where it was the only active adapter the first remaining adapter
    /// becomes active, as in PEFT.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <param name="adapterName">The adapter to delete.</param>
    /// <exception cref="PeftConfigurationException">No layer has an adapter with that name.</exception>
    public static void DeleteAdapter(this nn.Module root, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(adapterName);
        EnsureExists(root, adapterName);
        foreach (var (stack, _) in root.Runners().Where(r => r.Runner.AdapterName == adapterName).ToList())
        {
            StackRunners.Remove(stack, adapterName);
        }

        foreach (var (_, layer) in root.AdaptedLayers())
        {
            if (layer.HasAdapter(adapterName))
            {
                layer.DeleteAdapter(adapterName);
            }
        }

        foreach (var point in ModuleTree.Walk(root).Select(n => n.Module).OfType<IInsertionPoint>().ToList())
        {
            point.Remove(adapterName);
        }
    }

    private static void EnsureExists(nn.Module root, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(adapterName);
        bool found = root.AdaptedLayers().Any(l => l.Layer.HasAdapter(adapterName))
            || root.InsertedAdapters().Any(a => a.Adapter.AdapterName == adapterName);
        if (!found)
        {
            var known = root.AdapterNames();
            throw new PeftConfigurationException(
                $"No layer has an adapter named '{adapterName}'. Adapters in this model: {(known.Count == 0 ? "none" : string.Join(", ", known.Select(n => $"'{n}'")))}.",
                null, adapterName);
        }
    }

    private sealed class RestoreScope : IDisposable
    {
        private Action? _restore;

        public RestoreScope(Action restore) => _restore = restore;

        public void Dispose()
        {
            var restore = Interlocked.Exchange(ref _restore, null);
            restore?.Invoke();
        }
    }

    private static void RefuseInsertedMerge(nn.Module root, string? adapterName)
    {
        var refused = root.InsertedAdapters().FirstOrDefault(a => adapterName is null ? a.Adapter.Active : a.Adapter.AdapterName == adapterName);
        if (refused.Adapter is not null)
        {
            throw new PeftConfigurationException(
                $"Adapter '{refused.Adapter.AdapterName}' at '{refused.Path}' is inserted after a sub-layer ({refused.Adapter.GetType().Name}); its non-linearity " +
                "cannot be merged into any weight, so it always runs as a module. Merge other adapters by name (Merge(\"name\")), or deactivate it first.",
                null, refused.Adapter.AdapterName);
        }
    }
}
