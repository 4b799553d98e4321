using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>Merging and unmerging: adapters fold into the base parameters in the order the forward applies them
/// (<see cref="MergeStage"/>) and come out in reverse.</summary>
public abstract partial class AdaptedLayer
{
    /// <summary>
    /// Merges adapters into the base parameters under no_grad: the named adapter, or every active mergeable adapter when
    /// <paramref name="adapterName"/> is null (in the order the forward applies them). Already merged adapters, and adapters
    /// that cannot be merged (prompts), are skipped; those keep acting in the forward.
    /// </summary>
    /// <param name="adapterName">The adapter to merge, or null for all active adapters.</param>
    /// <param name="safeMerge">Compute each merge on copies and refuse it (leaving the parameters unchanged) when the result
    /// contains NaN or infinity.</param>
    /// <exception cref="PeftConfigurationException">The named adapter does not exist.</exception>
    /// <exception cref="InvalidOperationException"><paramref name="safeMerge"/> found NaN or infinity.</exception>
    public void Merge(string? adapterName = null, bool safeMerge = true)
    {
        var targets = adapterName is null
            ? _active.Select(GetAdapter).OrderBy(MergeStage).ToList()
            : new List<PeftAdapter> { GetAdapter(adapterName) };
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var adapter in targets)
            {
                if (adapter.Merged || adapter is not IMergeableAdapter mergeable)
                {
                    continue;
                }

                var target = new LayerParameters(Weight, Bias);
                if (safeMerge)
                {
                    using var weight = Weight.clone();
                    using var bias = Bias?.clone();
                    mergeable.MergeInto(new LayerParameters(weight, bias));
                    if (!AllFinite(weight) || (bias is not null && !AllFinite(bias)))
                    {
                        // The adapter may have cached state for its unmerge (DoRA's norm); it is overwritten on the next merge.
                        throw new InvalidOperationException(
                            $"NaN or infinity detected in the merged weights of member '{MemberName}': adapter '{adapter.AdapterName}' seems to be broken. " +
                            "The weights were left unchanged.");
                    }

                    target.Weight.copy_(weight);
                    if (bias is not null)
                    {
                        target.Bias!.copy_(bias);
                    }
                }
                else
                {
                    mergeable.MergeInto(target);
                }

                adapter.Merged = true;
                _mergeOrder.Add(adapter);
            }
        }
        finally
        {
            RefreshLive();
        }
    }

    /// <summary>
    /// Takes merged adapters out of the base parameters: the named adapter, or all merged adapters in reverse merge order
    /// when <paramref name="adapterName"/> is null. Unmerged adapters are skipped.
    /// </summary>
    /// <param name="adapterName">The adapter to unmerge, or null for all merged adapters.</param>
    /// <exception cref="PeftConfigurationException">The named adapter does not exist.</exception>
    public void Unmerge(string? adapterName = null)
    {
        if (adapterName is null)
        {
            for (int i = _mergeOrder.Count - 1; i >= 0; i--)
            {
                UnmergeOne(_mergeOrder[i]);
            }
        }
        else
        {
            var adapter = GetAdapter(adapterName);
            if (adapter.Merged)
            {
                // Adapters merged after this one were applied on top of it: take them out, then put them back.
                int index = _mergeOrder.IndexOf(adapter);
                var later = _mergeOrder.Skip(index + 1).ToList();
                for (int i = later.Count - 1; i >= 0; i--)
                {
                    UnmergeOne(later[i]);
                }

                UnmergeOne(adapter);
                foreach (var again in later)
                {
                    Merge(again.AdapterName, safeMerge: false);
                }
            }
        }

        RefreshLive();
    }

    /// <summary>The order in which adapters are merged: the order the forward applies them in.</summary>
    /// <param name="adapter">An adapter.</param>
    /// <returns>Input scaling, row rescaling and parameter (or bias) overrides, additive updates, output scaling, then
    /// feature scale-and-shift.</returns>
    private protected static int MergeStage(PeftAdapter adapter) => adapter switch
    {
        IScalingAdapter { ScalesInput: true } => 0,
        IRowRescalingAdapter or IParameterOverrideAdapter or IBiasOverrideAdapter or IWeightRewritingAdapter => 1,
        IAdditiveAdapter => 2,
        IScalingAdapter => 3,
        IFeatureAffineAdapter => 4,
        _ => 2,
    };

    private static bool AllFinite(Tensor t)
    {
        using var finite = t.isfinite();
        using var all = finite.all();
        return all.item<bool>();
    }

    private void UnmergeOne(PeftAdapter adapter)
    {
        if (adapter is IMergeableAdapter mergeable)
        {
            using (torch.no_grad())
            {
                mergeable.UnmergeFrom(new LayerParameters(Weight, Bias));
            }
        }

        adapter.Merged = false;
        _mergeOrder.Remove(adapter);
    }
}
