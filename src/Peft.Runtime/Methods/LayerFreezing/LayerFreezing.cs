using System.Globalization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Telly-style layer freezing (Shi et al., 2023, "Towards Efficient Fine-tuning of Pre-trained Code Models: An Experimental
/// Study and Beyond"): freeze the input embeddings and the bottom <c>k</c> blocks of a transformer stack, or any set of blocks,
/// and fine-tune the rest. A configuration, not an adapter: it trains the model's own weights, so there is nothing to merge and
/// nothing PEFT saves (save the model's weights). Applied with <see cref="LayerFreezingExtensions.FreezeLayers"/> to any model
/// with an <see cref="ITransformerStack"/> (every <c>Peft.Models</c> family, or a user's own).
/// </summary>
/// <remarks>
/// Freezing is <see cref="PeftModel.Freeze"/> on each chosen module, so it holds through every later trainability pass,
/// adapters inside frozen blocks included. When the embeddings and the bottom blocks are frozen, the stack runs them under
/// <c>no_grad</c> (<see cref="TransformerStacks.GradientFreeBlocks"/>): no activations are stored for them, and the backward
/// stops at the first trained block. Frozen blocks above a trained one still run with the graph (gradients must flow through
/// them to the blocks below), but their weights get no gradient.
/// </remarks>
public sealed class LayerFreezing
{
    private readonly int[] _blocks;

    /// <summary>Freezes the input embeddings (unless <paramref name="embeddings"/> is false) and the bottom
    /// <paramref name="bottom"/> blocks (Telly-K).</summary>
    /// <param name="bottom">How many blocks, from the input side, to freeze: 0 to the stack's block count.</param>
    /// <param name="embeddings">Whether to freeze the embedding modules too (Telly does).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bottom"/> is negative.</exception>
    public LayerFreezing(int bottom, bool embeddings = true)
    {
        if (bottom < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(bottom), bottom, $"LayerFreezing(bottom: {bottom}): the number of bottom blocks to freeze must be 0 or more.");
        }

        Bottom = bottom;
        Embeddings = embeddings;
        _blocks = Enumerable.Range(0, bottom).ToArray();
    }

    private LayerFreezing(int[] blocks, bool embeddings)
    {
        _blocks = blocks;
        Embeddings = embeddings;
    }

    /// <summary>Freezes the blocks at <paramref name="blocks"/> (0 = the bottom block) and, unless
    /// <paramref name="embeddings"/> is false, the embeddings.</summary>
    /// <param name="blocks">Block indices (duplicates are ignored).</param>
    /// <param name="embeddings">Whether to freeze the embedding modules too.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An index is negative.</exception>
    public static LayerFreezing Layers(IEnumerable<int> blocks, bool embeddings = true)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        var set = blocks.Distinct().Order().ToArray();
        if (set.Length > 0 && set[0] < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), set[0], $"LayerFreezing.Layers: block index {set[0]} is negative; blocks are numbered from 0 at the input side.");
        }

        return new LayerFreezing(set, embeddings);
    }

    /// <summary>Freezes the embeddings and the blocks at <paramref name="blocks"/>.</summary>
    /// <param name="blocks">Block indices.</param>
    /// <returns>The configuration.</returns>
    public static LayerFreezing Layers(params int[] blocks) => Layers((IEnumerable<int>)blocks);

    /// <summary>For <c>LayerFreezing(bottom: k)</c>, k; null for an explicit set of blocks.</summary>
    public int? Bottom { get; }

    /// <summary>The frozen block indices, ascending.</summary>
    public IReadOnlyList<int> Blocks => _blocks;

    /// <summary>Whether the embedding modules are frozen.</summary>
    public bool Embeddings { get; }

    /// <summary>The modules to freeze in <paramref name="stack"/>: the embedding modules (if frozen) and the chosen blocks.</summary>
    /// <param name="stack">The stack.</param>
    /// <param name="where">The stack's name, for messages.</param>
    /// <returns>The modules.</returns>
    /// <exception cref="PeftConfigurationException">A block the configuration names does not exist.</exception>
    public IReadOnlyList<nn.Module> Select(ITransformerStack stack, string where)
    {
        ArgumentNullException.ThrowIfNull(stack);
        int count = stack.Blocks.Count;
        if (_blocks.Length > 0 && _blocks[^1] >= count)
        {
            string asked = Bottom is int k ? $"{this} asks for the bottom {k} blocks" : $"{this} names block {_blocks[^1]}";
            throw new PeftConfigurationException(
                $"{asked}, but {where} has {count} block{(count == 1 ? "" : "s")} (0 to {count - 1}); " +
                (Bottom is null ? "name blocks that exist." : $"use a bottom of at most {count} (all of them trains only what sits above the stack)."),
                null, null);
        }

        var modules = new List<nn.Module>();
        if (Embeddings) modules.AddRange(stack.EmbeddingModules);
        modules.AddRange(_blocks.Select(i => stack.Blocks[i]));
        return modules;
    }

    /// <inheritdoc />
    public override string ToString() => Bottom is int k
        ? $"LayerFreezing(bottom: {k.ToString(CultureInfo.InvariantCulture)}{(Embeddings ? "" : ", embeddings: false")})"
        : $"LayerFreezing.Layers({string.Join(", ", _blocks.Select(b => b.ToString(CultureInfo.InvariantCulture)))}{(Embeddings ? "" : ", embeddings: false")})";
}

/// <summary>Applies <see cref="LayerFreezing"/> to a model.</summary>
public static class LayerFreezingExtensions
{
    /// <summary>
    /// Freezes what <paramref name="freezing"/> chooses in the model's transformer stack (<see cref="TransformerStacks.Find"/>)
    /// with <see cref="PeftModel.Freeze"/>, then applies the trainability rule. Everything else keeps training (all of it in
    /// a model without adapters: full fine-tuning of the rest, as Telly).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="freezing">What to freeze.</param>
    /// <returns>The frozen modules.</returns>
    /// <exception cref="PeftConfigurationException">The model has no (or several) transformer stacks, or a named block does
    /// not exist; nothing is frozen then.</exception>
    public static IReadOnlyList<nn.Module> FreezeLayers(this nn.Module model, LayerFreezing freezing)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(freezing);
        var (path, stack) = TransformerStacks.Find(model);
        string where = path.Length == 0 ? model.GetType().Name : $"{model.GetType().Name}'s stack '{path}'";
        var modules = freezing.Select(stack, where);
        foreach (var module in modules)
        {
            module.Freeze();
        }

        model.ApplyTrainability();
        return modules;
    }
}
