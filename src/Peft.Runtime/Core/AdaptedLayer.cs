using System.Collections.ObjectModel;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// The one contract of every wrapped layer (<see cref="AdaptedLinear"/>, <see cref="AdaptedEmbedding"/>,
/// <see cref="AdaptedNorm"/>): named adapters as child modules, the active set, merge/unmerge, disable and delete. The wrapper
/// registers the wrapped layer's <c>weight</c> and <c>bias</c> under their own names, so base checkpoint keys are unchanged.
/// </summary>
/// <remarks>
/// <para>As in Hugging Face PEFT, the first adapter added to a layer becomes active; later ones stay inactive until selected
/// with <see cref="SetActiveAdapters"/> (or <see cref="PeftModel.SetActiveAdapter"/>).</para>
/// <para>What an adapter does is said by its capability interfaces (<see cref="IAdditiveAdapter"/>, <see cref="IScalingAdapter"/>,
/// ...); each wrapper's forward composes the live adapters by capability, in a fixed order its documentation gives, and
/// merges them in that order.</para>
/// </remarks>
public abstract partial class AdaptedLayer : nn.Module<Tensor, Tensor>
{
    /// <summary>The registered name of the base weight.</summary>
    public const string WeightName = "weight";

    /// <summary>The registered name of the base bias.</summary>
    public const string BiasName = "bias";

    private readonly List<PeftAdapter> _adapters = new();
    private readonly List<string> _active = new();
    private readonly List<PeftAdapter> _mergeOrder = new();
    private readonly ReadOnlyCollection<PeftAdapter> _adaptersView;
    private readonly ReadOnlyCollection<string> _activeView;
    private PeftAdapter[] _live = Array.Empty<PeftAdapter>();
    private bool _disabled;

    /// <summary>Initialises the wrapper.</summary>
    /// <param name="name">The module name.</param>
    /// <param name="memberName">The member the layer belongs to (used in messages).</param>
    private protected AdaptedLayer(string name, string memberName)
        : base(name)
    {
        MemberName = memberName;
        _adaptersView = _adapters.AsReadOnly();
        _activeView = _active.AsReadOnly();
    }

    /// <summary>The member this layer was wrapped for (used in messages).</summary>
    public string MemberName { get; }

    /// <summary>The kind of base layer.</summary>
    public abstract PeftLayerKind Kind { get; }

    /// <summary>The base weight, registered as <c>weight</c>.</summary>
    public abstract Parameter Weight { get; }

    /// <summary>The base bias, registered as <c>bias</c>, or null.</summary>
    public abstract Parameter? Bias { get; }

    /// <summary>The input size (Linear: in_features; Embedding: vocabulary; Norm: normalised size).</summary>
    public abstract long InFeatures { get; }

    /// <summary>The output size (Linear: out_features; Embedding: embedding size; Norm: normalised size).</summary>
    public abstract long OutFeatures { get; }

    /// <summary>What adapters for this layer are created for.</summary>
    public PeftLayerInfo Info => new(Kind, InFeatures, OutFeatures, Bias is not null, BaseDevice, BaseType, MemberName);

    /// <summary>The device the base weight lives on (adapters are created there).</summary>
    protected virtual Device BaseDevice => Weight.device;

    /// <summary>The element type the base product computes in (adapters are created in it): the weight's, or a quantized
    /// weight's dequantized type.</summary>
    protected virtual ScalarType BaseType => Weight.dtype;

    /// <summary>All adapters on this layer, in the order they were added.</summary>
    public IReadOnlyList<PeftAdapter> Adapters => _adaptersView;

    /// <summary>The names of the active adapters, in application order.</summary>
    public IReadOnlyList<string> ActiveAdapters => _activeView;

    /// <summary>The names of the adapters currently merged into the base parameters, in merge order.</summary>
    public IReadOnlyList<string> MergedAdapters => _mergeOrder.Select(a => a.AdapterName).ToArray();

    /// <summary>True while at least one adapter is merged into the base parameters.</summary>
    public bool IsMerged => _mergeOrder.Count > 0;

    /// <summary>
    /// Disables every adapter: the forward is the base layer's. Setting it unmerges merged adapters first (PEFT's semantics:
    /// a disabled layer computes with the original weights).
    /// </summary>
    public bool AdaptersDisabled
    {
        get => _disabled;
        set
        {
            _disabled = value;
            if (value && IsMerged)
            {
                Unmerge();
            }

            RefreshLive();
        }
    }

    /// <summary>The adapters that take part in the forward pass now: active, unmerged, adapters enabled; in active order.</summary>
    protected IReadOnlyList<PeftAdapter> LiveAdapters => _live;

    /// <summary>Whether an adapter with this name is on the layer.</summary>
    /// <param name="adapterName">The adapter name.</param>
    public bool HasAdapter(string adapterName) => Find(adapterName) is not null;

    /// <summary>Whether the named adapter is active.</summary>
    /// <param name="adapterName">The adapter name.</param>
    public bool IsActive(string adapterName) => _active.Contains(adapterName, StringComparer.Ordinal);

    /// <summary>Returns the named adapter.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>The adapter.</returns>
    /// <exception cref="PeftConfigurationException">The layer has no adapter with that name.</exception>
    public PeftAdapter GetAdapter(string adapterName) =>
        Find(adapterName) ?? throw new PeftConfigurationException(
            $"Member '{MemberName}' has no adapter named '{adapterName}'. Its adapters: {DescribeAdapters()}.",
            MemberName, adapterName);

    /// <summary>
    /// Creates an adapter from <paramref name="options"/> for this layer (on its weight's device and dtype) and adds it:
    /// what generated code calls for each adapter attribute, and what configuration targeting calls.
    /// </summary>
    /// <param name="adapterName">The adapter name, unique on this layer.</param>
    /// <param name="options">The method's options.</param>
    /// <returns>This layer.</returns>
    /// <exception cref="PeftConfigurationException">The name is taken or invalid, the method does not apply to this kind of
    /// layer, or the options do not fit the layer.</exception>
    public AdaptedLayer WithAdapter(string adapterName, PeftAdapterOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        EnsureNameFree(adapterName);
        EnsureApplies(options.Method, adapterName);
        var info = Info;
        options.Validate(adapterName, info);
        var adapter = options.CreateAdapter(adapterName, info);
        try
        {
            AddAdapter(adapter);
            return this;
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }

    /// <summary>Adds an adapter, registered as a child module named <see cref="PeftAdapter.AdapterName"/>. The first adapter
    /// on a layer becomes active. An <see cref="IBaseInitializedAdapter"/> is initialised from the layer's parameters first; one
    /// that rewrites the base (<see cref="IBaseRewritingAdapter"/>) leaves its residual in the base weight.</summary>
    /// <param name="adapter">An adapter created for this layer (<see cref="Info"/>).</param>
    /// <returns>This layer.</returns>
    /// <exception cref="PeftConfigurationException">The name is taken, the kind, sizes, device or dtype do not match, or the adapter
    /// rewrites the base while adapters are merged or after the base was replaced.</exception>
    public AdaptedLayer AddAdapter(PeftAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        EnsureNameFree(adapter.AdapterName);
        EnsureApplies(adapter.Method, adapter.AdapterName);
        var layer = adapter.Layer;
        if (layer.Kind != Kind || layer.InFeatures != InFeatures || layer.OutFeatures != OutFeatures)
        {
            throw new PeftConfigurationException(
                $"Adapter '{adapter.AdapterName}' was created for a {layer.Kind} layer of sizes {layer.InFeatures} -> {layer.OutFeatures}, but member '{MemberName}' is a {Kind} layer of sizes {InFeatures} -> {OutFeatures}. " +
                "Create it with this layer's Info (layer.WithAdapter(name, options) does).",
                MemberName, adapter.AdapterName);
        }

        var (device, dtype) = (BaseDevice, BaseType);
        foreach (var (peftName, p) in adapter.PeftTensors())
        {
            if (p.dtype != dtype || p.device_type != device.type || p.device_index != device.index)
            {
                throw new PeftConfigurationException(
                    $"Adapter '{adapter.AdapterName}' tensor '{peftName}' is {p.dtype} on {p.device}, but member '{MemberName}' has its weight as {dtype} on {device}. " +
                    "Create the adapter with this layer's Info (its device and dtype).",
                    MemberName, adapter.AdapterName);
            }
        }

        InitializeAdded(adapter);

        // A module is created in training mode; an adapter added to a layer in eval mode must not start dropping out.
        adapter.train(training);
        register_module(adapter.AdapterName, adapter);
        _adapters.Add(adapter);
        if (_adapters.Count == 1)
        {
            _active.Add(adapter.AdapterName);
        }

        RefreshLive();
        return this;
    }

    /// <summary>
    /// Removes and disposes an adapter (unmerging it first if merged). When it was the only active adapter, the first
    /// remaining adapter becomes active, as in PEFT. An adapter that rewrote the base leaves the residual there, as PEFT's
    /// <c>delete_adapter</c> does (reload the base checkpoint for the original weight).
    /// </summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <exception cref="PeftConfigurationException">The layer has no adapter with that name.</exception>
    public void DeleteAdapter(string adapterName)
    {
        var adapter = GetAdapter(adapterName);
        if (adapter.Merged)
        {
            Unmerge(adapterName);
        }

        _adapters.Remove(adapter);
        _internal_submodules.Remove(adapterName);
        bool wasActive = _active.Remove(adapterName);
        if (wasActive && _active.Count == 0 && _adapters.Count > 0)
        {
            _active.Add(_adapters[0].AdapterName);
        }

        RefreshLive();
        ForgetResidualIfNone();
        adapter.Dispose();
    }

    /// <summary>
    /// Makes exactly the named adapters active (none when called without names). Merged adapters that are not in the new
    /// set are unmerged first.
    /// </summary>
    /// <param name="adapterNames">Adapter names on this layer, without duplicates.</param>
    /// <exception cref="PeftConfigurationException">A name is unknown or repeated, or the layer cannot apply that set
    /// together (e.g. two prompts on one embedding).</exception>
    public void SetActiveAdapters(params string[] adapterNames)
    {
        ArgumentNullException.ThrowIfNull(adapterNames);
        var set = new HashSet<string>(StringComparer.Ordinal);
        var adapters = new List<PeftAdapter>();
        foreach (var name in adapterNames)
        {
            adapters.Add(GetAdapter(name));
            if (!set.Add(name))
            {
                throw new PeftConfigurationException(
                    $"Adapter '{name}' is listed twice in SetActiveAdapters on member '{MemberName}'.", MemberName, name);
            }
        }

        ValidateActiveSet(adapters);
        for (int i = _mergeOrder.Count - 1; i >= 0; i--)
        {
            if (!set.Contains(_mergeOrder[i].AdapterName))
            {
                UnmergeOne(_mergeOrder[i]);
            }
        }

        _active.Clear();
        _active.AddRange(adapterNames);
        RefreshLive();
    }

    /// <summary>Whether the adapter currently takes part in the forward pass (active and adapters enabled).</summary>
    /// <param name="adapter">An adapter of this layer.</param>
    internal bool IsLive(PeftAdapter adapter) => !_disabled && IsActive(adapter.AdapterName);

    /// <summary>Checks that this layer can apply <paramref name="active"/> together; throws otherwise. The default accepts any set.</summary>
    /// <param name="active">The adapters about to become active.</param>
    private protected virtual void ValidateActiveSet(IReadOnlyList<PeftAdapter> active)
    {
    }

    /// <summary>Called when the live set changes, so a subclass can classify the live adapters by capability once.</summary>
    private protected virtual void OnLiveChanged()
    {
    }

    /// <summary>Components are registered explicitly; TorchSharp's reflection-based registration is not used.</summary>
    protected override void RegisterComponents()
    {
    }

    private void EnsureApplies(PeftMethod method, string adapterName)
    {
        if ((method.LayerKinds & Kind) == 0)
        {
            throw new PeftConfigurationException(
                $"[{method.Name}] applies to {method.LayerKinds} layers, but member '{MemberName}' is a {Kind} layer; adapter '{adapterName}' cannot be added. " +
                $"Put the attribute (or the target) on a {method.LayerKinds} layer.",
                MemberName, adapterName);
        }
    }

    private PeftAdapter? Find(string adapterName)
    {
        foreach (var a in _adapters)
        {
            if (string.Equals(a.AdapterName, adapterName, StringComparison.Ordinal))
            {
                return a;
            }
        }

        return null;
    }

    private void EnsureNameFree(string adapterName)
    {
        AdapterNameRules.Validate(adapterName, MemberName, WeightName, BiasName);
        if (Find(adapterName) is not null)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' already has an adapter named '{adapterName}'. Give each adapter on one member a distinct Name.",
                MemberName, adapterName);
        }
    }

    private string DescribeAdapters() =>
        _adapters.Count == 0 ? "none" : string.Join(", ", _adapters.Select(a => $"'{a.AdapterName}'"));

    private void RefreshLive()
    {
        if (_disabled)
        {
            _live = Array.Empty<PeftAdapter>();
        }
        else
        {
            var live = new List<PeftAdapter>(_active.Count);
            foreach (var name in _active)
            {
                var adapter = Find(name);
                if (adapter is not null && !adapter.Merged)
                {
                    live.Add(adapter);
                }
            }

            _live = live.ToArray();
        }

        OnLiveChanged();
    }

    /// <summary>Unmerges before the base forward when adapters were disabled while merged (a defensive check).</summary>
    private protected void EnsureUnmergedWhenDisabled()
    {
        if (_disabled && _mergeOrder.Count > 0)
        {
            Unmerge();
        }
    }
}
