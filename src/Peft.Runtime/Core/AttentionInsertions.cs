using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>The shape of one attention sub-layer, as the methods that act inside it see it.</summary>
/// <param name="Layer">The block's index in its stack, bottom first.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KeyValueHeads">Key/value heads (fewer than <paramref name="Heads"/> under grouped-query attention; each then
/// serves <c>Heads / KeyValueHeads</c> consecutive query heads).</param>
/// <param name="HeadDim">Width of one head.</param>
/// <param name="HiddenSize">Width of the hidden states the key and value projections read.</param>
public sealed record AttentionGeometry(int Layer, int Heads, int KeyValueHeads, int HeadDim, long HiddenSize)
{
    /// <summary>Width of all key (or value) heads together: <c>KeyValueHeads · HeadDim</c>, PEFT's per-layer prefix width.</summary>
    public long KeyValueWidth => (long)KeyValueHeads * HeadDim;
}

/// <summary>What an attention adapter that adjusts the heads may read: the queries the scores used and the attention's own
/// key/value projections (for adapters that attend to tokens of their own, as the adaption prompt does).</summary>
public sealed class AttentionContext
{
    private readonly Func<Tensor, (Tensor Keys, Tensor Values)> _projectKeysValues;

    /// <summary>Creates the context (called by the attention module).</summary>
    /// <param name="geometry">The attention's shape.</param>
    /// <param name="queries">The queries [batch, heads, time, headDim], rotated where the family rotates them, not scaled.</param>
    /// <param name="projectKeysValues">Maps hidden states [batch, n, hidden] through the attention's key and value projections
    /// (their adapters included) to keys and values [batch, kvHeads, n, headDim] each, without rotary embeddings.</param>
    public AttentionContext(AttentionGeometry geometry, Tensor queries, Func<Tensor, (Tensor Keys, Tensor Values)> projectKeysValues)
    {
        Geometry = geometry ?? throw new ArgumentNullException(nameof(geometry));
        Queries = queries ?? throw new ArgumentNullException(nameof(queries));
        _projectKeysValues = projectKeysValues ?? throw new ArgumentNullException(nameof(projectKeysValues));
    }

    /// <summary>The attention's shape.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>The queries [batch, heads, time, headDim] as the scores used them (rotated, not scaled by 1/√headDim).</summary>
    public Tensor Queries { get; }

    /// <summary>Projects hidden states [batch, n, hidden] with the attention's key and value projections.</summary>
    /// <param name="hidden">The hidden states.</param>
    /// <returns>Keys and values [batch, kvHeads, n, headDim], without rotary embeddings.</returns>
    public (Tensor Keys, Tensor Values) ProjectKeysValues(Tensor hidden) => _projectKeysValues(hidden);
}

/// <summary>
/// A module a method inserts inside a block's attention: it may place keys and values before the sequence's own (a prefix
/// every query attends to: prefix tuning, MAM's prefix) and may adjust the heads' outputs before the output projection
/// (LoFiT's per-head scale and bias, the adaption prompt's gated attention to its own tokens). Trained, switched and deleted
/// by name like every <see cref="InsertedAdapter"/>.
/// </summary>
public abstract class AttentionAdapter : InsertedAdapter
{
    /// <summary>Creates the adapter.</summary>
    /// <param name="adapterName">The adapter's name.</param>
    protected AttentionAdapter(string adapterName) : base(adapterName)
    {
    }

    /// <summary>How many key/value positions <see cref="Prefix"/> places before the sequence (0: none).</summary>
    public virtual long PrefixLength => 0;

    /// <summary>The prefix keys and values, each [batch, kvHeads, <see cref="PrefixLength"/>, headDim]; called only when
    /// <see cref="PrefixLength"/> is positive.</summary>
    /// <param name="batch">The batch size.</param>
    /// <returns>Keys and values (not rotated: prefix keys enter attention as they are, as PEFT's past key/values do).</returns>
    public virtual (Tensor Keys, Tensor Values) Prefix(long batch) =>
        throw new NotSupportedException($"{GetType().Name} places no prefix (PrefixLength is 0).");

    /// <summary>Whether <see cref="AdjustHeads"/> changes anything (false skips building the context).</summary>
    public virtual bool AdjustsHeads => false;

    /// <summary>The heads' new outputs.</summary>
    /// <param name="context">The queries and the key/value projections.</param>
    /// <param name="heads">The attended values [batch, heads, time, headDim], before the heads are merged and projected.</param>
    /// <returns>The new head outputs, same shape.</returns>
    public virtual Tensor AdjustHeads(AttentionContext context, Tensor heads) => heads;
}

/// <summary>The point inside one attention module where <see cref="AttentionAdapter"/>s live, registered on the attention as
/// <c>insertions</c> the first time something is inserted.</summary>
public sealed class AttentionInsertionPoint : InsertionPoint<AttentionAdapter>
{
    /// <summary>The point's registered name on the attention module.</summary>
    public const string ModuleName = "insertions";

    internal AttentionInsertionPoint() : base(ModuleName)
    {
    }
}

/// <summary>
/// The insertion points inside one attention module. The attention creates one with its <see cref="AttentionGeometry"/> and,
/// in its forward, (1) passes its keys and values [batch, kvHeads, time, headDim] (after the cache, before grouped-query
/// repetition) through <see cref="PrependPrefix"/> and lets every query see the prefix, and (2) passes the attended heads
/// through <see cref="AdjustHeads"/> before merging them. Its stack starts the sequence's positions after the prefix
/// (<see cref="TransformerStacks.KeyValuePrefixLength"/>), as Hugging Face models do for PEFT's past key/values. While
/// nothing is inserted both calls return their inputs (one null check, nothing registered, outputs bit-equal).
/// </summary>
public sealed class AttentionInsertions
{
    private readonly nn.Module _attention;
    private AttentionInsertionPoint? _point;

    /// <summary>Creates the points of <paramref name="attention"/>.</summary>
    /// <param name="attention">The attention module (the point registers on it).</param>
    /// <param name="geometry">Its shape.</param>
    public AttentionInsertions(nn.Module attention, AttentionGeometry geometry)
    {
        _attention = attention ?? throw new ArgumentNullException(nameof(attention));
        Geometry = geometry ?? throw new ArgumentNullException(nameof(geometry));
    }

    /// <summary>The attention's shape.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>The attention module the points belong to (where <c>insertions</c> registers; its path is the attention's
    /// path in files, e.g. PEFT's <c>…self_attn.adaption_prompt</c>).</summary>
    public nn.Module Module => _attention;

    /// <summary>
    /// The attention's output projection, for methods whose head adjustments fold into it (LoFiT's merge): a function
    /// returning the module that maps the merged heads <c>[batch, time, heads · headDim]</c> (head <c>h</c> in columns
    /// <c>h · headDim</c> to <c>(h + 1) · headDim − 1</c>) to the attention's output, with nothing in between. A function,
    /// not the module, because configuration may wrap the member later (<see cref="PeftTargeting.ApplyTargets"/> replaces
    /// <c>o_proj</c> by its <see cref="AdaptedLinear"/>). The family sets it (Llama <c>o_proj</c>, GPT-2 <c>c_proj</c>, BERT
    /// <c>attention.output.dense</c>, USE-lite <c>out_proj</c>); null where the attention has none such.
    /// </summary>
    public Func<nn.Module>? OutputProjection { get; set; }

    /// <summary>The output projection's weight <c>[out, heads · headDim]</c> and bias (null when it has none), read through
    /// <see cref="OutputProjection"/> (the base weight of an adapted layer).</summary>
    /// <returns>The module, its weight and its bias.</returns>
    /// <exception cref="PeftConfigurationException">No output projection is set, it is not a linear layer, or its input width
    /// is not <c>heads · headDim</c> (the messages name the layer and the fix).</exception>
    public (nn.Module Module, Tensor Weight, Tensor? Bias) OutputProjectionWeights()
    {
        var module = OutputProjection?.Invoke() ?? throw new PeftConfigurationException(
            $"The attention of layer {Geometry.Layer} ({_attention.GetType().Name}) does not say which module projects its heads; set its " +
            "AttentionInsertions.OutputProjection to a function returning that Linear (docs/ARCHITECTURE.md, \"Transformer stacks\").", null, null);
        var (weight, bias) = module switch
        {
            AdaptedLinear adapted => ((Tensor)adapted.Weight, (Tensor?)adapted.Bias),
            TorchSharp.Modules.Linear linear => (linear.weight!, linear.bias),
            _ => throw new PeftConfigurationException(
                $"The output projection of the attention of layer {Geometry.Layer} is a {module.GetType().Name}, not a Linear layer; " +
                "only a linear projection can take a head adjustment's merge.", null, null),
        };
        long width = (long)Geometry.Heads * Geometry.HeadDim;
        if (weight.dim() != 2 || weight.shape[1] != width)
        {
            throw new PeftConfigurationException(
                $"The output projection of the attention of layer {Geometry.Layer} has weight [{string.Join(", ", weight.shape)}]; it must read the " +
                $"merged heads, [out, {width}] (heads · headDim). Point OutputProjection at the layer right after the heads are merged.", null, null);
        }

        return (module, weight, bias);
    }

    /// <summary>The point, once anything was inserted; else null.</summary>
    public AttentionInsertionPoint? Point => _point;

    /// <summary>Key/value positions the active adapters place before the sequence.</summary>
    public long PrefixLength
    {
        get
        {
            if (_point is null) return 0;
            long length = 0;
            foreach (var adapter in _point.Adapters)
            {
                if (adapter.Active) length += adapter.PrefixLength;
            }

            return length;
        }
    }

    /// <summary>Whether any active adapter adjusts the heads.</summary>
    public bool AdjustsHeads => _point is not null && _point.Adapters.Any(a => a.Active && a.AdjustsHeads);

    /// <summary>Inserts <paramref name="adapter"/>, registering the point on the attention the first time.</summary>
    /// <param name="adapter">The adapter.</param>
    public void Insert(AttentionAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (_point is null)
        {
            _point = new AttentionInsertionPoint();
            _attention.register_module(AttentionInsertionPoint.ModuleName, _point);
        }

        _point.Add(adapter);
    }

    /// <summary>Places the active adapters' prefixes (in insertion order) before <paramref name="keys"/> and
    /// <paramref name="values"/> along the position dimension.</summary>
    /// <param name="keys">Keys [batch, kvHeads, time, headDim] (cached positions included).</param>
    /// <param name="values">Values, same shape.</param>
    /// <returns>The keys and values with the prefixes first (the inputs themselves while there is none).</returns>
    /// <exception cref="PeftConfigurationException">An adapter's prefix has the wrong shape (the message names it).</exception>
    public (Tensor Keys, Tensor Values) PrependPrefix(Tensor keys, Tensor values)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        if (PrefixLength == 0) return (keys, values);
        long batch = keys.shape[0];
        var keyParts = new List<Tensor>();
        var valueParts = new List<Tensor>();
        foreach (var adapter in _point!.Adapters)
        {
            if (!adapter.Active || adapter.PrefixLength == 0) continue;
            var (k, v) = adapter.Prefix(batch);
            long[] expected = [batch, Geometry.KeyValueHeads, adapter.PrefixLength, Geometry.HeadDim];
            if (!k.shape.SequenceEqual(expected) || !v.shape.SequenceEqual(expected))
            {
                throw new PeftConfigurationException(
                    $"Attention adapter '{adapter.AdapterName}' ({adapter.GetType().Name}) at layer {Geometry.Layer} gave a prefix of shape " +
                    $"[{string.Join(", ", k.shape)}]/[{string.Join(", ", v.shape)}]; this attention needs [{string.Join(", ", expected)}] " +
                    "(batch, key/value heads, prefix length, head width). Create the adapter for this model's geometry.",
                    null, adapter.AdapterName);
            }

            keyParts.Add(k.to(keys.dtype));
            valueParts.Add(v.to(values.dtype));
        }

        keyParts.Add(keys);
        valueParts.Add(values);
        return (cat(keyParts, 2), cat(valueParts, 2));
    }

    /// <summary>The heads after every active adapter's <see cref="AttentionAdapter.AdjustHeads"/>, in insertion order.</summary>
    /// <param name="heads">The attended values [batch, heads, time, headDim].</param>
    /// <param name="queries">The queries the scores used [batch, heads, time, headDim] (rotated, not scaled).</param>
    /// <param name="projectKeysValues">The attention's key/value projection (see <see cref="AttentionContext"/>).</param>
    /// <returns>The new heads (<paramref name="heads"/> itself while no adapter adjusts them).</returns>
    public Tensor AdjustHeads(Tensor heads, Tensor queries, Func<Tensor, (Tensor Keys, Tensor Values)> projectKeysValues)
    {
        ArgumentNullException.ThrowIfNull(heads);
        if (!AdjustsHeads) return heads;
        var context = new AttentionContext(Geometry, queries, projectKeysValues);
        foreach (var adapter in _point!.Adapters)
        {
            if (adapter.Active && adapter.AdjustsHeads) heads = adapter.AdjustHeads(context, heads);
        }

        return heads;
    }
}
