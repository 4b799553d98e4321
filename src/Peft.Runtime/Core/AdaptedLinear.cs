using System.Collections.ObjectModel;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// A linear layer with named adapters (<see cref="LoRAAdapter"/>, <see cref="KroneckerAdapter"/>). It takes over the
/// wrapped <see cref="Linear"/>'s <c>weight</c> and <c>bias</c> parameters under their own names, so base checkpoint
/// keys (<c>q_proj.weight</c>) are unchanged, and registers each adapter as a child module named by the adapter.
/// </summary>
/// <remarks>
/// <para>Forward: <c>y = linear(x, W, b)</c>; each active, unmerged adapter then accumulates its low-rank path into
/// <c>y</c> in place. With adapters disabled, or none active and unmerged, the forward is exactly the base
/// <c>linear</c> (a merged layer costs the same as the base layer).</para>
/// <para>As in Hugging Face PEFT, the first adapter added to a layer becomes active; later ones stay inactive until
/// selected with <see cref="SetActiveAdapters"/> (or <see cref="PeftModel.SetActiveAdapter"/>).</para>
/// </remarks>
public sealed partial class AdaptedLinear : nn.Module<Tensor, Tensor>
{
    /// <summary>The registered name of the base weight.</summary>
    internal const string WeightName = "weight";

    /// <summary>The registered name of the base bias.</summary>
    internal const string BiasName = "bias";

    private readonly long _in;
    private readonly long _out;
    private readonly List<LinearAdapter> _adapters = new();
    private readonly List<string> _active = new();
    private readonly List<LinearAdapter> _mergeOrder = new();
    private readonly ReadOnlyCollection<LinearAdapter> _adaptersView;
    private readonly ReadOnlyCollection<string> _activeView;
    private Parameter _weight;
    private Parameter? _bias;
    private LinearAdapter[] _live = Array.Empty<LinearAdapter>();
    private bool _disabled;

    private AdaptedLinear(Parameter weight, Parameter? bias, string memberName)
        : base(nameof(AdaptedLinear))
    {
        _weight = weight;
        _bias = bias;
        _out = weight.shape[0];
        _in = weight.shape[1];
        MemberName = memberName;
        _adaptersView = _adapters.AsReadOnly();
        _activeView = _active.AsReadOnly();

        // TorchSharp's to(deviceType) skips a module whose recorded device equals the target; record the real one.
        _deviceType = weight.device_type;
        _deviceIndex = weight.device_index;
        register_parameter(WeightName, weight);
        if (bias is not null)
        {
            register_parameter(BiasName, bias);
        }
    }

    /// <summary>
    /// Wraps the <see cref="Linear"/> held by a member (generated code calls this from <c>InitializePeft()</c>).
    /// </summary>
    /// <param name="layer">A <see cref="Linear"/>, or an <see cref="AdaptedLinear"/> (returned as is).</param>
    /// <param name="memberName">The member name, used in messages.</param>
    /// <returns>The wrapper, which owns the layer's weight and bias parameters from now on.</returns>
    /// <exception cref="PeftConfigurationException"><paramref name="layer"/> is null or not a linear layer.</exception>
    public static AdaptedLinear Wrap(nn.Module<Tensor, Tensor>? layer, string memberName)
    {
        ArgumentNullException.ThrowIfNull(memberName);
        switch (layer)
        {
            case AdaptedLinear adapted:
                return adapted;
            case Linear linear:
                {
                    var weight = linear.weight;
                    if (weight is null || weight.Dimensions != 2)
                    {
                        throw new PeftConfigurationException(
                            $"Member '{memberName}' holds a Linear without a 2-D weight; it cannot be adapted. Assign a layer created with nn.Linear(in, out).",
                            memberName, null);
                    }

                    var wrapper = new AdaptedLinear(weight, linear.bias, memberName);

                    // The wrapper now owns the parameters. The Linear object is dropped by the caller; make sure its
                    // finalizer can never dispose the parameters it used to hold.
                    GC.SuppressFinalize(linear);
                    return wrapper;
                }

            case null:
                throw new PeftConfigurationException(
                    $"Member '{memberName}' is null when InitializePeft() runs. [LoRA] and [Kronecker] wrap the TorchSharp.Modules.Linear the member holds: " +
                    $"assign it before InitializePeft() is called, e.g. in the field initializer ('{memberName} = Linear(inFeatures, outFeatures);').",
                    memberName, null);
            default:
                throw new PeftConfigurationException(
                    $"Member '{memberName}' holds a {layer.GetType().FullName}, but [LoRA] and [Kronecker] adapt only TorchSharp.Modules.Linear layers. " +
                    $"Remove the attribute from '{memberName}', or put it on a member that holds a Linear (nn.Linear(inFeatures, outFeatures)).",
                    memberName, null);
        }
    }

    /// <summary>The member this layer was wrapped for (used in messages).</summary>
    public string MemberName { get; }

    /// <summary>The base weight <c>[out, in]</c>, registered as <c>weight</c>.</summary>
    public Parameter Weight => _weight;

    /// <summary>The base bias <c>[out]</c>, registered as <c>bias</c>, or null.</summary>
    public Parameter? Bias => _bias;

    /// <summary>The input size.</summary>
    public long InFeatures => _in;

    /// <summary>The output size.</summary>
    public long OutFeatures => _out;

    /// <summary>All adapters on this layer, in the order they were added.</summary>
    public IReadOnlyList<LinearAdapter> Adapters => _adaptersView;

    /// <summary>The names of the active adapters, in application order.</summary>
    public IReadOnlyList<string> ActiveAdapters => _activeView;

    /// <summary>The names of the adapters currently merged into <see cref="Weight"/>, in merge order.</summary>
    public IReadOnlyList<string> MergedAdapters => _mergeOrder.Select(a => a.AdapterName).ToArray();

    /// <summary>True while at least one adapter is merged into <see cref="Weight"/>.</summary>
    public bool IsMerged => _mergeOrder.Count > 0;

    /// <summary>
    /// Disables every adapter: the forward is the base layer's. Setting it unmerges merged adapters first (PEFT's
    /// semantics: a disabled layer computes with the original weight).
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
    public LinearAdapter GetAdapter(string adapterName) =>
        Find(adapterName) ?? throw new PeftConfigurationException(
            $"Member '{MemberName}' has no adapter named '{adapterName}'. Its adapters: {DescribeAdapters()}.",
            MemberName, adapterName);

    /// <summary>
    /// Adds an adapter, registered as a child module named <see cref="LinearAdapter.AdapterName"/>. The first adapter
    /// on a layer becomes active.
    /// </summary>
    /// <param name="adapter">An adapter created for this layer's sizes, device and dtype.</param>
    /// <returns>This layer.</returns>
    /// <exception cref="PeftConfigurationException">The name is taken, or the sizes, device or dtype do not match.</exception>
    public AdaptedLinear AddAdapter(LinearAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        EnsureNameFree(adapter.AdapterName);
        if (adapter.InFeatures != _in || adapter.OutFeatures != _out)
        {
            throw new PeftConfigurationException(
                $"Adapter '{adapter.AdapterName}' was created for a {adapter.InFeatures} -> {adapter.OutFeatures} layer, but member '{MemberName}' is {_in} -> {_out}. " +
                "Create it with this layer's InFeatures and OutFeatures.",
                MemberName, adapter.AdapterName);
        }

        foreach (var (peftName, p) in adapter.PeftTensors())
        {
            if (p.dtype != _weight.dtype || p.device_type != _weight.device_type || p.device_index != _weight.device_index)
            {
                throw new PeftConfigurationException(
                    $"Adapter '{adapter.AdapterName}' tensor '{peftName}' is {p.dtype} on {p.device}, but member '{MemberName}' has its weight as {_weight.dtype} on {_weight.device}. " +
                    "Create the adapter with device: layer.Weight.device and dtype: layer.Weight.dtype.",
                    MemberName, adapter.AdapterName);
            }
        }

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
    /// remaining adapter becomes active, as in PEFT.
    /// </summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <exception cref="PeftConfigurationException">The layer has no adapter with that name.</exception>
    public void DeleteAdapter(string adapterName)
    {
        var adapter = GetAdapter(adapterName);
        if (adapter.Merged)
        {
            UnmergeOne(adapter);
        }

        _adapters.Remove(adapter);
        _internal_submodules.Remove(adapterName);
        bool wasActive = _active.Remove(adapterName);
        if (wasActive && _active.Count == 0 && _adapters.Count > 0)
        {
            _active.Add(_adapters[0].AdapterName);
        }

        RefreshLive();
        adapter.Dispose();
    }

    /// <summary>
    /// Makes exactly the named adapters active (none when called without names). Merged adapters that are not in the
    /// new set are unmerged first.
    /// </summary>
    /// <param name="adapterNames">Adapter names on this layer, without duplicates.</param>
    /// <exception cref="PeftConfigurationException">A name is unknown or repeated.</exception>
    public void SetActiveAdapters(params string[] adapterNames)
    {
        ArgumentNullException.ThrowIfNull(adapterNames);
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in adapterNames)
        {
            GetAdapter(name);
            if (!set.Add(name))
            {
                throw new PeftConfigurationException(
                    $"Adapter '{name}' is listed twice in SetActiveAdapters on member '{MemberName}'.", MemberName, name);
            }
        }

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

    /// <summary>
    /// Merges adapters into the base weight (<c>W += ΔW</c>, under no_grad): the named adapter, or every active adapter
    /// when <paramref name="adapterName"/> is null. Already merged adapters are skipped.
    /// </summary>
    /// <param name="adapterName">The adapter to merge, or null for all active adapters.</param>
    /// <param name="safeMerge">Compute the merged weight in a copy and refuse it (leaving the weight unchanged) when it
    /// contains NaN or infinity.</param>
    /// <exception cref="PeftConfigurationException">The named adapter does not exist.</exception>
    /// <exception cref="InvalidOperationException"><paramref name="safeMerge"/> found NaN or infinity.</exception>
    public void Merge(string? adapterName = null, bool safeMerge = true)
    {
        var targets = adapterName is null
            ? _active.Select(GetAdapter).ToList()
            : new List<LinearAdapter> { GetAdapter(adapterName) };
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var adapter in targets)
            {
                if (adapter.Merged)
                {
                    continue;
                }

                using var delta = adapter.DeltaWeight();
                if (safeMerge)
                {
                    using var candidate = _weight.add(delta);
                    using var finite = candidate.isfinite();
                    using var allFinite = finite.all();
                    if (!allFinite.item<bool>())
                    {
                        throw new InvalidOperationException(
                            $"NaN or infinity detected in the merged weight of member '{MemberName}': adapter '{adapter.AdapterName}' seems to be broken. " +
                            "The weight was left unchanged.");
                    }

                    _weight.copy_(candidate);
                }
                else
                {
                    _weight.add_(delta);
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
    /// Subtracts merged adapters from the base weight (<c>W -= ΔW</c>): the named adapter, or all merged adapters in
    /// reverse merge order when <paramref name="adapterName"/> is null. Unmerged adapters are skipped.
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
                UnmergeOne(adapter);
            }
        }

        RefreshLive();
    }

    /// <summary>
    /// Computes <c>linear(x, W, b)</c> plus the in-place contribution of every active, unmerged adapter.
    /// </summary>
    /// <param name="input">The input <c>[..., in]</c>.</param>
    /// <returns>The output <c>[..., out]</c>.</returns>
    public override Tensor forward(Tensor input)
    {
        if (_disabled && _mergeOrder.Count > 0)
        {
            Unmerge();
        }

        var live = _live;
        if (live.Length == 0)
        {
            return F.linear(input, _weight, _bias);
        }

        if (input.Dimensions == 2)
        {
            var y = F.linear(input, _weight, _bias);
            try
            {
                foreach (var adapter in live)
                {
                    adapter.AddTo(input, y);
                }
            }
            catch
            {
                y.Dispose();
                throw;
            }

            return y;
        }

        using var x2 = input.reshape(-1, _in);
        using var y2 = F.linear(x2, _weight, _bias);
        foreach (var adapter in live)
        {
            adapter.AddTo(x2, y2);
        }

        var shape = input.shape;
        shape[^1] = _out;
        return y2.view(shape);
    }

    /// <summary>Whether the adapter currently takes part in the forward pass (active and adapters enabled).</summary>
    internal bool IsLive(LinearAdapter adapter) => !_disabled && IsActive(adapter.AdapterName);

    /// <summary>Components are registered explicitly; TorchSharp's reflection-based registration is not used.</summary>
    protected override void RegisterComponents()
    {
    }

    /// <summary>Moves or converts the layer, then refreshes the cached base parameters.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        _weight = _internal_params[WeightName];
        _bias = _internal_params.TryGetValue(BiasName, out var b) ? b : null;
    }

    private LinearAdapter? Find(string adapterName)
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

    private void UnmergeOne(LinearAdapter adapter)
    {
        using (torch.no_grad())
        {
            using var delta = adapter.DeltaWeight();
            _weight.sub_(delta);
        }

        adapter.Merged = false;
        _mergeOrder.Remove(adapter);
    }

    private void RefreshLive()
    {
        if (_disabled)
        {
            _live = Array.Empty<LinearAdapter>();
            return;
        }

        var live = new List<LinearAdapter>(_active.Count);
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
}
