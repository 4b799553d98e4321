using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Turning a model's transformer stack into MEFT's reversible stack (<see cref="MeftConfig"/>) on any model whose blocks
/// implement <see cref="ITransformerBlock"/> (every <c>Peft.Models</c> family, or a user's own): per block a reversible adapter
/// registered as <c>&lt;block&gt;.rev_adapters.&lt;name&gt;</c> and a parallel adapter at <c>&lt;block&gt;.output_adapters.adapters.&lt;name&gt;</c>,
/// and a <see cref="MeftRunner"/> attached to the stack. Files: <see cref="MeftFiles"/>.
/// </summary>
public static class Meft
{
    /// <summary>The module under which each block holds its reversible adapters by name (the authors' <c>rev_adapter</c>,
    /// keyed as this library keys inserted adapters: <c>&lt;block&gt;.rev_adapters.&lt;name&gt;.dense1.weight</c>).</summary>
    public const string ReversibleAdaptersName = "rev_adapters";

    /// <summary>
    /// Adds MEFT named <paramref name="adapterName"/> to the model's stack and applies the trainability rule (the adapters
    /// train, the base model is frozen).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="config">The configuration.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <returns>The runner (its adapters, reconstruction measurements).</returns>
    /// <exception cref="PeftConfigurationException">The configuration is invalid, the model has no stack or its blocks offer no
    /// insertion points, a block does not keep its width, the stack already has a runner, <c>num_rev_layers</c> exceeds the
    /// block count, or the name is taken; nothing is added then.</exception>
    public static MeftRunner AddMeft(this nn.Module model, MeftConfig config, string adapterName = AdapterNames.Default)
    {
        var plan = Plan(model, config, adapterName);
        var blocks = new List<nn.Module>();
        var reversible = new List<MeftAdapter>();
        var feedForward = new List<(BlockInsertions, MeftAdapter)>();
        foreach (var (block, width) in plan.Blocks)
        {
            var module = (nn.Module)block;
            var device = module.parameters().FirstOrDefault()?.device;
            var rev = new MeftAdapter(adapterName, config, width, config.LayernormInAdapter);
            var ffn = new MeftAdapter(adapterName, config, width, layerNorm: false);
            if (device is not null)
            {
                rev.to(device);
                ffn.to(device);
            }

            Holder(module).register_module(adapterName, rev);
            block.Insertions.Insert(Sublayer.FeedForward, ffn);
            blocks.Add(module);
            reversible.Add(rev);
            feedForward.Add((block.Insertions, ffn));
        }

        var runner = new MeftRunner(adapterName, config, plan.First, blocks, reversible, feedForward, () =>
        {
            foreach (var (module, rev) in blocks.Zip(reversible))
            {
                Holder(module).Unregister(adapterName);
                rev.Dispose();
            }

            foreach (var (insertions, _) in feedForward) insertions.Find(Sublayer.FeedForward)?.Remove(adapterName);
        });
        StackRunners.Attach(plan.Stack, runner);
        model.ApplyTrainability();
        return runner;
    }

    /// <summary>The MEFT runner of the model's stack, or null when it has none.</summary>
    /// <param name="model">The model.</param>
    /// <returns>The runner or null.</returns>
    public static MeftRunner? MeftOf(this nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Runners().Select(r => r.Runner).OfType<MeftRunner>().FirstOrDefault();
    }

    /// <summary>The block's <c>rev_adapters</c> module, registered the first time.</summary>
    private static AdapterContainer Holder(nn.Module block)
    {
        if (block.named_children().FirstOrDefault(c => c.name == ReversibleAdaptersName).module is AdapterContainer existing) return existing;
        var holder = new AdapterContainer();
        block.register_module(ReversibleAdaptersName, holder);
        return holder;
    }

    internal sealed record Placement(ITransformerStack Stack, string StackPath, int First, IReadOnlyList<(ITransformerBlock Block, long Width)> Blocks, IReadOnlyList<string> BlockPaths);

    /// <summary>Checks everything <see cref="AddMeft"/> needs without changing the model.</summary>
    internal static Placement Plan(nn.Module model, MeftConfig config, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        AdapterNameRules.Validate(adapterName, null);
        var (stackPath, stack) = TransformerStacks.Find(model);
        var (_, blocks) = TransformerBlocks.Find(model);
        if (StackRunners.Of(stack) is { } existing)
        {
            throw new PeftConfigurationException(
                $"The stack already runs its blocks through adapter '{existing.AdapterName}' ({existing.GetType().Name}); a stack takes one MEFT. " +
                $"Delete it first (model.DeleteAdapter(\"{existing.AdapterName}\")).", null, adapterName);
        }

        if (model.AdapterNames().Contains(adapterName, StringComparer.Ordinal))
        {
            throw new PeftConfigurationException($"The model already has an adapter named '{adapterName}'; pass another adapterName.", null, adapterName);
        }

        if (config.NumRevLayers is { } rev && rev > blocks.Count)
        {
            throw new PeftConfigurationException(
                $"MeftConfig: num_rev_layers = {rev} exceeds the stack's {blocks.Count} blocks; use at most {blocks.Count} (null: every block).", null, adapterName);
        }

        var paths = ModuleTree.Walk(model).ToDictionary(n => (object)n.Module, n => n.Path, ReferenceEqualityComparer.Instance);
        var placed = new List<(ITransformerBlock, long)>();
        var blockPaths = new List<string>();
        // Blocks that change the width (USE-lite's first layer, 256 -> 512) cannot be reversible; at the bottom of the stack
        // they run as ordinary blocks before the doubled stream starts.
        int first = 0;
        while (first < blocks.Count && !KeepsWidth(blocks[first])) first++;
        if (first == blocks.Count)
        {
            throw new PeftConfigurationException("No block of the stack keeps its width; MEFT's reversible layers need blocks that map d features to d.", null, adapterName);
        }

        if (config.NumRevLayers is { } below && below > 0 && below <= first)
        {
            throw new PeftConfigurationException(
                $"MeftConfig: num_rev_layers = {below} covers only the stack's first {first} block(s), which change the width and stay ordinary blocks; " +
                $"use 0 or more than {first}.", null, adapterName);
        }

        for (int i = first; i < blocks.Count; i++)
        {
            var (attentionIn, _) = blocks[i].Insertions.Features(Sublayer.Attention);
            var (ffnIn, ffnOut) = blocks[i].Insertions.Features(Sublayer.FeedForward);
            string path = paths[blocks[i]];
            if (!KeepsWidth(blocks[i]))
            {
                throw new PeftConfigurationException(
                    $"Block '{path}' maps {attentionIn} features to {ffnOut} (feed-forward input {ffnIn}) above blocks that keep the width; MEFT's reversible " +
                    "layers need blocks that keep it (only blocks at the bottom of the stack may change it).",
                    null, adapterName);
            }

            if (((nn.Module)blocks[i]).named_children().FirstOrDefault(c => c.name == ReversibleAdaptersName).module is { } child and not AdapterContainer)
            {
                throw new PeftConfigurationException($"Block '{path}' already has a child named '{ReversibleAdaptersName}' ({child.GetType().Name}).", null, adapterName);
            }

            placed.Add((blocks[i], ffnOut));
            blockPaths.Add(path);
        }

        return new Placement(stack, stackPath, first, placed, blockPaths);
    }

    private static bool KeepsWidth(ITransformerBlock block)
    {
        var (attentionIn, attentionOut) = block.Insertions.Features(Sublayer.Attention);
        var (ffnIn, ffnOut) = block.Insertions.Features(Sublayer.FeedForward);
        return attentionIn == attentionOut && attentionOut == ffnIn && ffnIn == ffnOut;
    }
}
