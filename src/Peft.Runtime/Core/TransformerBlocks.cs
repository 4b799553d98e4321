using static TorchSharp.torch;

namespace Peft;

/// <summary>The two sub-layers of a transformer block where inserted modules (bottleneck adapters) act.</summary>
public enum Sublayer
{
    /// <summary>The attention sub-layer (the adapters library's <c>mh_adapter</c> location).</summary>
    Attention,

    /// <summary>The feed-forward sub-layer (the adapters library's <c>output_adapter</c> location).</summary>
    FeedForward,
}

/// <summary>
/// A block of an <see cref="ITransformerStack"/> that offers insertion points after its attention and feed-forward sub-layers.
/// Every <c>Peft.Models</c> family's block implements it, and a user's block can: hold one <see cref="BlockInsertions"/> and
/// pass each sub-layer's input and output through it before the residual add (docs/ARCHITECTURE.md, "Transformer stacks").
/// </summary>
public interface ITransformerBlock
{
    /// <summary>The block's insertion points.</summary>
    BlockInsertions Insertions { get; }
}

/// <summary>
/// A module a method inserts into a block rather than wrapping a layer: after a sub-layer (<see cref="SublayerAdapter"/>,
/// bottleneck adapters) or inside attention (<see cref="AttentionAdapter"/>, prefix tuning). Inserted adapters are adapters
/// for the trainability rule: their parameters train while they are active and nothing above them is frozen, and their
/// presence freezes the base model as any adapter does. The model-level switches (<c>SetActiveAdapter(s)</c>,
/// <c>DisableAdapters</c>, <c>DeleteAdapter</c>) reach them by name.
/// </summary>
public abstract class InsertedAdapter : nn.Module
{
    /// <summary>Creates the adapter.</summary>
    /// <param name="adapterName">The adapter's name (its key in the insertion point's <c>adapters</c> dictionary).</param>
    protected InsertedAdapter(string adapterName) : base(adapterName)
    {
        AdapterNameRules.Validate(adapterName, null);
        AdapterName = adapterName;
    }

    /// <summary>The adapter's name.</summary>
    public string AdapterName { get; }

    /// <summary>Whether the adapter runs (and trains); inactive adapters are skipped and frozen.</summary>
    public bool Active { get; set; } = true;
}

/// <summary>
/// A module a method inserts at a sub-layer of a block: it maps the sub-layer's input (the residual stream that entered it)
/// and its output (before the residual add) to a new output. A series adapter reads the output (<c>h + a(h)</c>), a parallel
/// one the input (<c>h + s·a(x)</c>).
/// </summary>
public abstract class SublayerAdapter : InsertedAdapter
{
    /// <summary>Creates the adapter.</summary>
    /// <param name="adapterName">The adapter's name.</param>
    protected SublayerAdapter(string adapterName) : base(adapterName)
    {
    }

    /// <summary>The sub-layer's new output.</summary>
    /// <param name="input">The sub-layer's input: the residual stream before the sub-layer (and before its pre-norm).</param>
    /// <param name="output">The sub-layer's output before the residual add.</param>
    /// <returns>The output the block adds to its residual.</returns>
    public abstract Tensor Apply(Tensor input, Tensor output);
}

/// <summary>
/// Where inserted adapters live: a module registered on the block (or its attention) the first time something is inserted,
/// holding the adapters in the order they run under <c>adapters.&lt;name&gt;</c>.
/// </summary>
/// <typeparam name="TAdapter">The kind of adapter the point holds.</typeparam>
public abstract class InsertionPoint<TAdapter> : nn.Module, IInsertionPoint where TAdapter : InsertedAdapter
{
    private readonly AdapterContainer adapters = new();
    private readonly List<TAdapter> _ordered = [];

    /// <summary>Creates the point.</summary>
    /// <param name="name">Its registered name.</param>
    protected InsertionPoint(string name) : base(name)
    {
        register_module(nameof(adapters), adapters);
    }

    /// <summary>The inserted adapters, in the order they run.</summary>
    public IReadOnlyList<TAdapter> Adapters => _ordered;

    /// <summary>Inserts <paramref name="adapter"/> after the ones already there.</summary>
    /// <param name="adapter">The adapter.</param>
    /// <exception cref="PeftConfigurationException">An adapter of the same name is already there.</exception>
    public void Add(TAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (_ordered.Any(a => a.AdapterName == adapter.AdapterName))
        {
            throw new PeftConfigurationException(
                $"{GetName()} already holds an adapter named '{adapter.AdapterName}'; choose another adapter name or remove it first.",
                null, null);
        }

        adapters.register_module(adapter.AdapterName, adapter);
        _ordered.Add(adapter);
    }

    /// <inheritdoc/>
    public bool Remove(string adapterName)
    {
        var adapter = _ordered.FirstOrDefault(a => a.AdapterName == adapterName);
        if (adapter is null)
        {
            return false;
        }

        _ordered.Remove(adapter);
        adapters.Unregister(adapterName);
        adapter.Dispose();
        return true;
    }
}

/// <summary>An insertion point of either kind, as <c>DeleteAdapter</c> sees it.</summary>
public interface IInsertionPoint
{
    /// <summary>Removes and disposes the adapter named <paramref name="adapterName"/>, if this point holds one.</summary>
    /// <param name="adapterName">The adapter's name.</param>
    /// <returns>True when an adapter was removed.</returns>
    bool Remove(string adapterName);
}

/// <summary>One insertion point (<c>attention_adapters</c> or <c>output_adapters</c>, the adapters library's names): its
/// inserted adapters in the order they were added, under <c>adapters.&lt;name&gt;</c>.</summary>
public sealed class SublayerInsertionPoint : InsertionPoint<SublayerAdapter>
{
    internal SublayerInsertionPoint(Sublayer sublayer, long inputFeatures, long outputFeatures) : base(ModuleName(sublayer))
    {
        Sublayer = sublayer;
        InputFeatures = inputFeatures;
        OutputFeatures = outputFeatures;
    }

    /// <summary>The registered name of a point: <c>attention_adapters</c> or <c>output_adapters</c>.</summary>
    /// <param name="sublayer">The sub-layer.</param>
    /// <returns>The name.</returns>
    public static string ModuleName(Sublayer sublayer) => sublayer == Sublayer.Attention ? "attention_adapters" : "output_adapters";

    /// <summary>The sub-layer.</summary>
    public Sublayer Sublayer { get; }

    /// <summary>Width of the sub-layer's input (what a parallel adapter reads).</summary>
    public long InputFeatures { get; }

    /// <summary>Width of the sub-layer's output (what a series adapter reads and every adapter writes).</summary>
    public long OutputFeatures { get; }

    /// <summary>Runs the active adapters in order: <c>output ← a_k(input, … a_1(input, output))</c>.</summary>
    /// <param name="input">The sub-layer's input.</param>
    /// <param name="output">The sub-layer's output before the residual add.</param>
    /// <returns>The new output (the same tensor when no adapter is active).</returns>
    public Tensor Apply(Tensor input, Tensor output)
    {
        foreach (var adapter in Adapters)
        {
            if (adapter.Active) output = adapter.Apply(input, output);
        }

        return output;
    }
}

/// <summary>The <c>adapters</c> child of an insertion point: a plain module whose children are the adapters by name.</summary>
internal sealed class AdapterContainer : nn.Module
{
    internal AdapterContainer() : base("adapters")
    {
    }

    /// <summary>Drops the child registered as <paramref name="name"/>.</summary>
    internal void Unregister(string name) => _internal_submodules.Remove(name);
}

/// <summary>
/// The insertion points of one block: after its attention and after its feed-forward sub-layer. A block creates one in its
/// constructor with the sub-layers' widths and, in its forward, replaces each sub-layer output <c>o</c> (before the residual
/// add) by <c>AfterAttention(x, o)</c> / <c>AfterFeedForward(x, o)</c> with <c>x</c> the sub-layer's input. While nothing is
/// inserted those return <c>o</c> itself (one null check, no module registered, outputs bit-equal); the first insertion
/// registers the point on the block as <c>attention_adapters</c> or <c>output_adapters</c>, so its parameters move, save and
/// train with the block.
/// </summary>
public sealed class BlockInsertions
{
    private readonly nn.Module _block;
    private readonly (long In, long Out) _attention;
    private readonly (long In, long Out) _feedForward;
    private SublayerInsertionPoint? _attentionPoint;
    private SublayerInsertionPoint? _feedForwardPoint;

    /// <summary>Creates the points of <paramref name="block"/>.</summary>
    /// <param name="block">The block (the points register on it).</param>
    /// <param name="attentionInput">Width of the attention sub-layer's input.</param>
    /// <param name="attentionOutput">Width of its output.</param>
    /// <param name="feedForwardInput">Width of the feed-forward sub-layer's input.</param>
    /// <param name="feedForwardOutput">Width of its output.</param>
    public BlockInsertions(nn.Module block, long attentionInput, long attentionOutput, long feedForwardInput, long feedForwardOutput)
    {
        ArgumentNullException.ThrowIfNull(block);
        _block = block;
        _attention = (attentionInput, attentionOutput);
        _feedForward = (feedForwardInput, feedForwardOutput);
    }

    /// <summary>The points inside the block's attention (key/value prefixes, head adjustments), or null when the block's
    /// attention offers none. A block sets it to its attention module's <see cref="AttentionInsertions"/>.</summary>
    public AttentionInsertions? Attention { get; init; }

    /// <summary>The attention sub-layer's output with the inserted adapters applied.</summary>
    /// <param name="input">The attention sub-layer's input.</param>
    /// <param name="output">Its output before the residual add.</param>
    /// <returns><paramref name="output"/> itself while nothing is inserted.</returns>
    public Tensor AfterAttention(Tensor input, Tensor output) => _attentionPoint is null ? output : _attentionPoint.Apply(input, output);

    /// <summary>The feed-forward sub-layer's output with the inserted adapters applied.</summary>
    /// <param name="input">The feed-forward sub-layer's input.</param>
    /// <param name="output">Its output before the residual add.</param>
    /// <returns><paramref name="output"/> itself while nothing is inserted.</returns>
    public Tensor AfterFeedForward(Tensor input, Tensor output) => _feedForwardPoint is null ? output : _feedForwardPoint.Apply(input, output);

    /// <summary><see cref="AfterAttention"/> or <see cref="AfterFeedForward"/>.</summary>
    /// <param name="sublayer">The sub-layer.</param>
    /// <param name="input">Its input.</param>
    /// <param name="output">Its output before the residual add.</param>
    /// <returns>The new output.</returns>
    public Tensor After(Sublayer sublayer, Tensor input, Tensor output) =>
        sublayer == Sublayer.Attention ? AfterAttention(input, output) : AfterFeedForward(input, output);

    /// <summary>Width of a sub-layer's input and output.</summary>
    /// <param name="sublayer">The sub-layer.</param>
    /// <returns>(input, output) widths.</returns>
    public (long Input, long Output) Features(Sublayer sublayer) => sublayer == Sublayer.Attention ? _attention : _feedForward;

    /// <summary>The point at <paramref name="sublayer"/> if anything was ever inserted there, else null.</summary>
    /// <param name="sublayer">The sub-layer.</param>
    /// <returns>The point or null.</returns>
    public SublayerInsertionPoint? Find(Sublayer sublayer) => sublayer == Sublayer.Attention ? _attentionPoint : _feedForwardPoint;

    /// <summary>Inserts <paramref name="adapter"/> at <paramref name="sublayer"/>, registering the point on the block the
    /// first time.</summary>
    /// <param name="sublayer">The sub-layer.</param>
    /// <param name="adapter">The adapter.</param>
    public void Insert(Sublayer sublayer, SublayerAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var point = Find(sublayer);
        if (point is null)
        {
            var (input, output) = Features(sublayer);
            point = new SublayerInsertionPoint(sublayer, input, output);
            _block.register_module(SublayerInsertionPoint.ModuleName(sublayer), point);
            if (sublayer == Sublayer.Attention) _attentionPoint = point;
            else _feedForwardPoint = point;
        }

        point.Add(adapter);
    }
}

/// <summary>Finding the blocks with insertion points.</summary>
public static class TransformerBlocks
{
    /// <summary>The blocks of the model's stack as <see cref="ITransformerBlock"/>s, bottom first.</summary>
    /// <param name="model">The model.</param>
    /// <returns>The stack's path and its blocks.</returns>
    /// <exception cref="PeftConfigurationException">The model has no stack, or a block does not implement
    /// <see cref="ITransformerBlock"/> (the message names it and the fix).</exception>
    public static (string Path, IReadOnlyList<ITransformerBlock> Blocks) Find(nn.Module model)
    {
        var (path, stack) = TransformerStacks.Find(model);
        var blocks = new List<ITransformerBlock>(stack.Blocks.Count);
        for (int i = 0; i < stack.Blocks.Count; i++)
        {
            blocks.Add(stack.Blocks[i] as ITransformerBlock ?? throw new PeftConfigurationException(
                $"Block {i} of {(path.Length == 0 ? model.GetType().Name : $"'{path}'")} ({stack.Blocks[i].GetType().Name}) does not implement ITransformerBlock, " +
                "so nothing can be inserted after its attention or feed-forward sub-layer; implement it with a BlockInsertions and pass each sub-layer's " +
                "output through AfterAttention/AfterFeedForward before the residual add (docs/ARCHITECTURE.md, \"Transformer stacks\").",
                null, null));
        }

        return (path, blocks);
    }

    /// <summary>The attention insertion points of every block of the model's stack, bottom first.</summary>
    /// <param name="model">The model.</param>
    /// <returns>The stack's path and each block's <see cref="AttentionInsertions"/>.</returns>
    /// <exception cref="PeftConfigurationException">A block's attention offers no insertion points (the message names it and
    /// the fix).</exception>
    public static (string Path, IReadOnlyList<AttentionInsertions> Attentions) FindAttentions(nn.Module model)
    {
        var (path, blocks) = Find(model);
        var attentions = new List<AttentionInsertions>(blocks.Count);
        for (int i = 0; i < blocks.Count; i++)
        {
            attentions.Add(blocks[i].Insertions.Attention ?? throw new PeftConfigurationException(
                $"Block {i} of {(path.Length == 0 ? model.GetType().Name : $"'{path}'")} ({blocks[i].GetType().Name}) offers no attention insertion points, " +
                "so no prefix or head adapter can act inside its attention; give its attention module an AttentionInsertions, pass keys/values through " +
                "PrependPrefix and the heads through AdjustHeads, and set BlockInsertions.Attention to it (docs/ARCHITECTURE.md, \"Transformer stacks\").",
                null, null));
        }

        return (path, attentions);
    }

    /// <summary>Every inserted adapter of the tree with its dotted path.</summary>
    /// <param name="root">The model.</param>
    /// <returns>(path, adapter) pairs in registration order.</returns>
    public static IEnumerable<(string Path, InsertedAdapter Adapter)> InsertedAdapters(this nn.Module root)
    {
        foreach (var node in ModuleTree.Walk(root))
        {
            if (node.Module is InsertedAdapter adapter) yield return (node.Path, adapter);
        }
    }
}
