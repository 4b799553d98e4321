namespace Peft;

/// <summary>
/// The MAM adapter of He et al., "Towards a Unified View of Parameter-Efficient Transfer Learning" (the adapters library's
/// <c>MAMConfig</c>): prefix tuning on every block's attention (<see cref="PrefixTuningConfig.Mam"/>: 30 positions through an
/// MLP of width 800) and a scaled parallel adapter beside every feed-forward sub-layer
/// (<see cref="BottleneckConfig.ScaledParallel"/>: reduction factor 2, scaling 4), both under one adapter name so the
/// switches (<c>SetActiveAdapter</c>, <c>DisableAdapters</c>, <c>DeleteAdapter</c>) act on the pair.
/// </summary>
public static class MamAdapter
{
    /// <summary>Adds the prefix and the parallel adapters named <paramref name="adapterName"/>, then applies the trainability
    /// rule.</summary>
    /// <param name="model">The model (its blocks must offer attention and sub-layer insertion points).</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="prefix">The prefix, or null for <see cref="PrefixTuningConfig.Mam"/>.</param>
    /// <param name="parallel">The parallel adapters, or null for <see cref="BottleneckConfig.ScaledParallel"/>.</param>
    /// <exception cref="PeftConfigurationException">A setting is invalid, the model lacks insertion points, or the name is
    /// taken; nothing is added then.</exception>
    public static void AddMamAdapter(this TorchSharp.torch.nn.Module model, string adapterName = AdapterNames.Default, PrefixTuningConfig? prefix = null, BottleneckConfig? parallel = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        prefix ??= PrefixTuningConfig.Mam();
        parallel ??= BottleneckConfig.ScaledParallel();
        parallel.Validate();
        if (model.InsertedAdapters().Any(a => a.Adapter.AdapterName == adapterName))
        {
            throw new PeftConfigurationException($"The model already has an inserted adapter named '{adapterName}'; pass another adapterName.", null, adapterName);
        }

        TransformerBlocks.FindAttentions(model);   // both kinds of insertion point exist before anything is added
        model.AddPrefixTuning(prefix, adapterName);
        model.AddBottleneckAdapters(parallel, adapterName);
    }
}
