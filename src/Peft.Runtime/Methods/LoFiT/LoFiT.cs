using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// LoFiT's two stages on any model whose transformer stack's attentions offer insertion points (every <c>Peft.Models</c>
/// family, or a user's own: docs/ARCHITECTURE.md, "Transformer stacks"):
/// <code>
/// model.AddLoFiT(new LoFiTConfig(LoFiTComponents.Scale, L1Lambda: 5e-3), adapterName: "heads");   // stage 1: all heads
/// // train with model.AdapterLossTerms() among TrainingOptions.Regularizers
/// var selection = model.SelectHeads(LoFiTConfig.DefaultHeadFraction, "heads");                   // top 10% by ‖A‖₂
/// model.DeleteAdapter("heads");
/// model.AddLoFiT(new LoFiTConfig(LoFiTComponents.Bias), selection);                              // stage 2: offsets
/// </code>
/// </summary>
public static class LoFiT
{
    /// <summary>The default adapter name.</summary>
    public const string DefaultAdapterName = "lofit";

    /// <summary>
    /// Inserts a LoFiT adapter into the attentions of the model's stack: on every head when <paramref name="selection"/> is
    /// null (stage 1), else on the selected heads only (attentions with none get nothing). On the device and in the floating
    /// dtype of the model's parameters; then applies the trainability rule (the vectors train, the base is frozen).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="config">The configuration.</param>
    /// <param name="selection">The heads (from <see cref="SelectHeads(nn.Module, int, string)"/> or <see cref="LoFiTHeadSelection.Load"/>), or null for all.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <returns>The inserted adapters, bottom first.</returns>
    /// <exception cref="PeftConfigurationException">A field is out of range, the model has no stack with attention insertion
    /// points, a selected head is not in the model, or the name is taken; nothing is inserted then.</exception>
    public static IReadOnlyList<LoFiTAdapter> AddLoFiT(this nn.Module model, LoFiTConfig config, LoFiTHeadSelection? selection = null, string adapterName = DefaultAdapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        AdapterNameRules.Validate(adapterName, null);
        config.Validate();
        var (_, attentions) = TransformerBlocks.FindAttentions(model);
        if (model.InsertedAdapters().Any(a => a.Adapter.AdapterName == adapterName))
        {
            throw new PeftConfigurationException($"The model already has an inserted adapter named '{adapterName}'; pass another adapterName to AddLoFiT.", null, adapterName);
        }

        var plan = new List<(AttentionInsertions Attention, int[] Heads)>();
        if (selection is null)
        {
            plan.AddRange(attentions.Select(a => (a, Enumerable.Range(0, a.Geometry.Heads).ToArray())));
        }
        else
        {
            foreach (var head in selection.Heads)
            {
                if (head.Layer < 0 || head.Layer >= attentions.Count || head.Head < 0 || head.Head >= attentions[head.Layer].Geometry.Heads)
                {
                    throw new PeftConfigurationException(
                        $"The LoFiT selection names layer {head.Layer} head {head.Head}, but the model has {attentions.Count} attention(s)" +
                        (head.Layer >= 0 && head.Layer < attentions.Count ? $" and layer {head.Layer} has {attentions[head.Layer].Geometry.Heads} heads" : "") +
                        "; select heads on this model (SelectHeads) or load the selection made for it.", null, adapterName);
                }
            }

            plan.AddRange(selection.Heads.GroupBy(h => h.Layer).OrderBy(g => g.Key)
                .Select(g => (attentions[g.Key], g.Select(h => h.Head).Distinct().Order().ToArray())));
        }

        var reference = model.parameters().FirstOrDefault(p => p.is_floating_point());
        var created = plan.Select(p =>
        {
            var adapter = new LoFiTAdapter(adapterName, config, p.Attention.Geometry, p.Heads);
            if (reference is not null) adapter.to(reference.device).to(reference.dtype);
            return adapter;
        }).ToList();
        for (int i = 0; i < plan.Count; i++) plan[i].Attention.Insert(created[i]);
        model.ApplyTrainability();
        return created;
    }

    /// <summary>Stage 1's localisation: the <paramref name="topK"/> heads with the largest ‖A_{ℓ,h}‖₂ among the scales of the
    /// adapter <paramref name="adapterName"/> (ties: lower layer, then lower head first).</summary>
    /// <param name="model">The model.</param>
    /// <param name="topK">How many heads to keep: 1 to the number of heads with scales.</param>
    /// <param name="adapterName">The stage-1 adapter.</param>
    /// <returns>The selection, with each head's norm.</returns>
    /// <exception cref="PeftConfigurationException">No LoFiT adapter of that name holds scales, or <paramref name="topK"/> is out of range.</exception>
    public static LoFiTHeadSelection SelectHeads(this nn.Module model, int topK, string adapterName = DefaultAdapterName)
    {
        var ranked = Ranked(model, adapterName);
        if (topK < 1 || topK > ranked.Count)
        {
            throw new PeftConfigurationException(
                $"SelectHeads topK is {topK}; it must be 1 to {ranked.Count} (the heads with scales in adapter '{adapterName}').", "topK", adapterName);
        }

        return new LoFiTHeadSelection(ranked.Take(topK).Select(r => r.Head).ToList(), ranked.Take(topK).Select(r => r.Norm).ToList());
    }

    /// <summary><see cref="SelectHeads(nn.Module, int, string)"/> with <c>K = max(1, round(headFraction · heads))</c> (the
    /// paper's default is 10%, <see cref="LoFiTConfig.DefaultHeadFraction"/>).</summary>
    /// <param name="model">The model.</param>
    /// <param name="headFraction">The share of heads to keep, in (0, 1].</param>
    /// <param name="adapterName">The stage-1 adapter.</param>
    /// <returns>The selection.</returns>
    /// <exception cref="PeftConfigurationException"><paramref name="headFraction"/> is outside (0, 1] or no adapter holds scales.</exception>
    public static LoFiTHeadSelection SelectHeads(this nn.Module model, double headFraction, string adapterName = DefaultAdapterName)
    {
        if (!double.IsFinite(headFraction) || headFraction <= 0 || headFraction > 1)
        {
            throw new PeftConfigurationException(
                $"SelectHeads headFraction is {headFraction}; it must be in (0, 1] (the paper keeps 0.1 of the heads; use the int overload for a count).", "headFraction", adapterName);
        }

        int count = Ranked(model, adapterName).Count;
        return model.SelectHeads(Math.Max(1, (int)Math.Round(headFraction * count, MidpointRounding.AwayFromZero)), adapterName);
    }

    /// <summary>Folds every LoFiT adapter named <paramref name="adapterName"/> into its attention's output projection
    /// (<see cref="LoFiTMath.Fold"/>); the adapters stay inserted but stop acting until <see cref="UnmergeLoFiT"/>.</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <exception cref="PeftConfigurationException">No such adapter, or one attention refuses (already merged, adapters on its
    /// projection, offsets without a bias); every check runs before any weight changes.</exception>
    public static void MergeLoFiT(this nn.Module model, string adapterName = DefaultAdapterName)
    {
        var located = Located(model, adapterName);
        foreach (var (attention, adapter) in located) adapter.CheckMerge(attention);
        foreach (var (attention, adapter) in located) adapter.Merge(attention);
    }

    /// <summary>Restores the output projections <see cref="MergeLoFiT"/> changed, exactly.</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter.</param>
    public static void UnmergeLoFiT(this nn.Module model, string adapterName = DefaultAdapterName)
    {
        foreach (var (attention, adapter) in Located(model, adapterName)) adapter.Unmerge(attention);
    }

    /// <summary>The model's LoFiT adapters named <paramref name="adapterName"/> with their attentions' insertion points, bottom first.</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The pairs.</returns>
    /// <exception cref="PeftConfigurationException">There is none.</exception>
    public static IReadOnlyList<(AttentionInsertions Attention, LoFiTAdapter Adapter)> Located(nn.Module model, string adapterName = DefaultAdapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        var (_, attentions) = TransformerBlocks.FindAttentions(model);
        var list = new List<(AttentionInsertions, LoFiTAdapter)>();
        foreach (var attention in attentions)
        {
            var adapter = attention.Point?.Adapters.OfType<LoFiTAdapter>().FirstOrDefault(a => a.AdapterName == adapterName);
            if (adapter is not null) list.Add((attention, adapter));
        }

        return list.Count > 0 ? list : throw new PeftConfigurationException(
            $"The model has no LoFiT adapter named '{adapterName}' (add one with AddLoFiT or LoadLoFiT).", null, adapterName);
    }

    private static List<(LoFiTHead Head, double Norm)> Ranked(nn.Module model, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        var ranked = new List<(LoFiTHead, double)>();
        foreach (var (_, adapter) in Located(model, adapterName))
        {
            ranked.AddRange(adapter.ScaleNorms().Select(n => (new LoFiTHead(adapter.Geometry.Layer, n.Head), n.Norm)));
        }

        return ranked.OrderByDescending(r => r.Item2).ThenBy(r => r.Item1.Layer).ThenBy(r => r.Item1.Head).ToList();
    }
}
