using System.Collections.ObjectModel;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// An input embedding layer with named prompt-tuning adapters (Lester et al., 2021). It registers the wrapped
/// <see cref="Embedding"/>'s weight under its own name (<c>weight</c>, so base checkpoint keys are unchanged) and each
/// <see cref="PromptTuningAdapter"/> as a child module named by the adapter.
/// </summary>
/// <remarks>
/// <para>With an active adapter, token ids <c>[B, T]</c> map to <c>[B, V + T, dim]</c>: the prompt is prepended.
/// Disabled, or with no active adapter, the output is the base embedding <c>[B, T, dim]</c>. One prompt adapter is
/// active at a time (the first one added, as in PEFT).</para>
/// <para>Merging does not apply to prompt tuning: <see cref="PeftModel.Merge"/> leaves these layers unchanged.</para>
/// </remarks>
public sealed class PromptTuningEmbedding : nn.Module<Tensor, Tensor>
{
    /// <summary>The registered name of the base embedding weight.</summary>
    internal const string WeightName = "weight";

    private readonly Embedding _embedding;
    private readonly List<PromptTuningAdapter> _adapters = new();
    private readonly ReadOnlyCollection<PromptTuningAdapter> _adaptersView;
    private Parameter _weight;
    private PromptTuningAdapter? _active;
    private bool _disabled;

    private PromptTuningEmbedding(Embedding embedding, Parameter weight, string memberName)
        : base(nameof(PromptTuningEmbedding))
    {
        _embedding = embedding;
        _weight = weight;
        MemberName = memberName;
        _adaptersView = _adapters.AsReadOnly();

        // TorchSharp's to(deviceType) skips a module whose recorded device equals the target; record the real one.
        _deviceType = weight.device_type;
        _deviceIndex = weight.device_index;
        register_parameter(WeightName, weight);
    }

    /// <summary>
    /// Wraps the <see cref="Embedding"/> held by a member (generated code calls this for <see cref="PromptTuneAttribute"/>).
    /// </summary>
    /// <param name="embedding">An <see cref="Embedding"/>, or a <see cref="PromptTuningEmbedding"/> (returned as is).</param>
    /// <param name="memberName">The member name, used in messages.</param>
    /// <returns>The wrapper.</returns>
    /// <exception cref="PeftConfigurationException"><paramref name="embedding"/> is null or not an embedding layer.</exception>
    public static PromptTuningEmbedding Wrap(nn.Module<Tensor, Tensor>? embedding, string memberName)
    {
        ArgumentNullException.ThrowIfNull(memberName);
        switch (embedding)
        {
            case PromptTuningEmbedding wrapped:
                return wrapped;
            case Embedding e:
                {
                    Parameter? weight = null;
                    foreach (var (name, p) in e.named_parameters(recurse: false))
                    {
                        if (name == WeightName)
                        {
                            weight = p;
                        }
                    }

                    if (weight is null || weight.Dimensions != 2)
                    {
                        throw new PeftConfigurationException(
                            $"Member '{memberName}' holds an Embedding without a 2-D weight; it cannot carry a prompt. Assign a layer created with nn.Embedding(vocabulary, dim).",
                            memberName, null);
                    }

                    return new PromptTuningEmbedding(e, weight, memberName);
                }

            case null:
                throw new PeftConfigurationException(
                    $"Member '{memberName}' is null when InitializePeft() runs. [PromptTune] wraps the TorchSharp.Modules.Embedding the member holds: " +
                    $"assign it before InitializePeft() is called, e.g. in the field initializer ('{memberName} = Embedding(vocabulary, dim);').",
                    memberName, null);
            default:
                throw new PeftConfigurationException(
                    $"Member '{memberName}' holds a {embedding.GetType().FullName}, but [PromptTune] applies only to the model's input TorchSharp.Modules.Embedding. " +
                    $"Remove the attribute from '{memberName}', or put it on the member that holds the token embedding (nn.Embedding(vocabulary, dim)).",
                    memberName, null);
        }
    }

    /// <summary>The member this layer was wrapped for (used in messages).</summary>
    public string MemberName { get; }

    /// <summary>The base embedding weight <c>[vocabulary, dim]</c>, registered as <c>weight</c>.</summary>
    public Parameter Weight => _weight;

    /// <summary>The vocabulary size.</summary>
    public long NumEmbeddings => _weight.shape[0];

    /// <summary>The embedding size.</summary>
    public long EmbeddingDim => _weight.shape[1];

    /// <summary>All prompt adapters on this layer, in the order they were added.</summary>
    public IReadOnlyList<PromptTuningAdapter> Adapters => _adaptersView;

    /// <summary>The name of the active prompt adapter, or null.</summary>
    public string? ActiveAdapter => _active?.AdapterName;

    /// <summary>Disables the prompt: the forward is the base embedding's.</summary>
    public bool AdaptersDisabled
    {
        get => _disabled;
        set => _disabled = value;
    }

    /// <summary>The number of virtual tokens the forward currently prepends (0 when disabled or none is active).</summary>
    public int VirtualTokenCount => _disabled || _active is null ? 0 : _active.VirtualTokens;

    /// <summary>Whether an adapter with this name is on the layer.</summary>
    /// <param name="adapterName">The adapter name.</param>
    public bool HasAdapter(string adapterName) => Find(adapterName) is not null;

    /// <summary>Returns the named adapter.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>The adapter.</returns>
    /// <exception cref="PeftConfigurationException">The layer has no adapter with that name.</exception>
    public PromptTuningAdapter GetAdapter(string adapterName) =>
        Find(adapterName) ?? throw new PeftConfigurationException(
            $"Member '{MemberName}' has no prompt adapter named '{adapterName}'. Its adapters: {DescribeAdapters()}.",
            MemberName, adapterName);

    /// <summary>
    /// Adds a prompt adapter created on the embedding weight's device and dtype (generated code calls this for each
    /// <see cref="PromptTuneAttribute"/>). The first adapter becomes active.
    /// </summary>
    /// <param name="adapterName">The adapter name, unique on this layer.</param>
    /// <param name="options">The prompt-tuning options.</param>
    /// <returns>This layer.</returns>
    /// <exception cref="PeftConfigurationException">The name is taken or invalid, or the options are invalid.</exception>
    public PromptTuningEmbedding WithPrompt(string adapterName, PromptTuningOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        EnsureNameFree(adapterName);
        var adapter = new PromptTuningAdapter(adapterName, EmbeddingDim, options, _weight.device, _weight.dtype, MemberName);
        try
        {
            return AddAdapter(adapter);
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }

    /// <summary>Adds a prompt adapter, registered as a child module named by the adapter. The first adapter becomes active.</summary>
    /// <param name="adapter">An adapter created for this layer's embedding size, device and dtype.</param>
    /// <returns>This layer.</returns>
    /// <exception cref="PeftConfigurationException">The name is taken, or the size, device or dtype do not match.</exception>
    public PromptTuningEmbedding AddAdapter(PromptTuningAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        EnsureNameFree(adapter.AdapterName);
        var p = adapter.PromptEmbeddings;
        if (adapter.EmbeddingDim != EmbeddingDim || p.dtype != _weight.dtype || p.device_type != _weight.device_type || p.device_index != _weight.device_index)
        {
            throw new PeftConfigurationException(
                $"Prompt adapter '{adapter.AdapterName}' is [{adapter.VirtualTokens}, {adapter.EmbeddingDim}] {p.dtype} on {p.device}, but member '{MemberName}' embeds into {EmbeddingDim} as {_weight.dtype} on {_weight.device}. " +
                "Create the adapter with this layer's EmbeddingDim, device and dtype.",
                MemberName, adapter.AdapterName);
        }

        register_module(adapter.AdapterName, adapter);
        _adapters.Add(adapter);
        _active ??= adapter;
        return this;
    }

    /// <summary>Makes the named prompt adapter the active one, or none when <paramref name="adapterName"/> is null.</summary>
    /// <param name="adapterName">An adapter name on this layer, or null.</param>
    /// <exception cref="PeftConfigurationException">The layer has no adapter with that name.</exception>
    public void SetActiveAdapter(string? adapterName) =>
        _active = adapterName is null ? null : GetAdapter(adapterName);

    /// <summary>
    /// Removes and disposes a prompt adapter. When it was active, the first remaining adapter becomes active, as in PEFT.
    /// </summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <exception cref="PeftConfigurationException">The layer has no adapter with that name.</exception>
    public void DeleteAdapter(string adapterName)
    {
        var adapter = GetAdapter(adapterName);
        _adapters.Remove(adapter);
        _internal_submodules.Remove(adapterName);
        if (ReferenceEquals(_active, adapter))
        {
            _active = _adapters.Count > 0 ? _adapters[0] : null;
        }

        adapter.Dispose();
    }

    /// <summary>
    /// Initialises a prompt from token embeddings (PEFT's TEXT init): the ids are repeated or truncated to V and the
    /// base embedding rows of those ids are copied into <c>prompt_embeddings</c>.
    /// </summary>
    /// <param name="adapterName">The prompt adapter to initialise.</param>
    /// <param name="tokenIds">Token ids of the init text (non-empty, each in [0, vocabulary)).</param>
    /// <exception cref="PeftConfigurationException">The adapter is unknown, or the ids are empty or out of range.</exception>
    public void InitializeFromTokenIds(string adapterName, IReadOnlyList<long> tokenIds)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        var adapter = GetAdapter(adapterName);
        if (tokenIds.Count == 0)
        {
            throw new PeftConfigurationException(
                $"Prompt adapter '{adapterName}' on member '{MemberName}': the init text produced no token ids; use a non-empty InitText.",
                MemberName, adapterName);
        }

        long vocabulary = NumEmbeddings;
        var ids = new long[adapter.VirtualTokens];
        for (int i = 0; i < ids.Length; i++)
        {
            long id = tokenIds[i % tokenIds.Count];
            if (id < 0 || id >= vocabulary)
            {
                throw new PeftConfigurationException(
                    $"Prompt adapter '{adapterName}' on member '{MemberName}': token id {id} is outside the vocabulary [0, {vocabulary}). Use the tokenizer that matches the embedding.",
                    MemberName, adapterName);
            }

            ids[i] = id;
        }

        using var noGrad = torch.no_grad();
        using var index = torch.tensor(ids, dtype: ScalarType.Int64, device: _weight.device);
        using var rows = _weight.index_select(0, index);
        adapter.PromptEmbeddings.copy_(rows);
    }

    /// <summary>
    /// Embeds token ids and prepends the active prompt: <c>[B, T]</c> → <c>[B, V + T, dim]</c> (or <c>[T]</c> →
    /// <c>[V + T, dim]</c>); without an active, enabled prompt the result is the base embedding.
    /// </summary>
    /// <param name="input">Token ids.</param>
    /// <returns>The embeddings.</returns>
    public override Tensor forward(Tensor input)
    {
        var embedded = _embedding.forward(input);
        var active = _active;
        if (_disabled || active is null)
        {
            return embedded;
        }

        using (embedded)
        {
            var prompt = active.PromptEmbeddings;
            using var cast = prompt.dtype == embedded.dtype ? null : prompt.to(embedded.dtype);
            var source = cast ?? prompt;
            if (embedded.Dimensions == 2)
            {
                return torch.cat(new[] { source, embedded }, 0);
            }

            var shape = embedded.shape;
            var expandShape = new long[shape.Length];
            for (int i = 0; i < shape.Length - 2; i++)
            {
                expandShape[i] = shape[i];
            }

            expandShape[^2] = active.VirtualTokens;
            expandShape[^1] = shape[^1];
            using var expanded = source.expand(expandShape);
            return torch.cat(new[] { expanded, embedded }, shape.Length - 2);
        }
    }

    /// <summary>Whether the adapter currently takes part in the forward pass (active and not disabled).</summary>
    internal bool IsLive(PromptTuningAdapter adapter) => !_disabled && ReferenceEquals(_active, adapter);

    /// <summary>Components are registered explicitly; TorchSharp's reflection-based registration is not used.</summary>
    protected override void RegisterComponents()
    {
    }

    /// <summary>Moves or converts the wrapped embedding and the prompts, then refreshes the cached weight.</summary>
    /// <param name="dtype">The target element type, if converting.</param>
    /// <param name="device">The target device, if moving.</param>
    /// <param name="non_blocking">Whether to copy asynchronously where possible.</param>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        // The (device, dtype) overload always converts; the device-only one would skip a native module whose recorded
        // device is stale (for example one created directly on an accelerator).
        _embedding.to(device ?? _weight.device, dtype ?? _weight.dtype, non_blocking);

        // The wrapped embedding now holds the moved weight; register that tensor under our name again.
        foreach (var (name, p) in _embedding.named_parameters(recurse: false))
        {
            if (name == WeightName)
            {
                _internal_params[WeightName] = p;
                _weight = p;
            }
        }

        base._toEpilog(dtype, device, non_blocking);
    }

    /// <summary>Disposes the wrapped embedding together with this layer.</summary>
    /// <param name="disposing">True when called from <see cref="nn.Module.Dispose()"/>.</param>
    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
        {
            _embedding.Dispose();
        }
    }

    private PromptTuningAdapter? Find(string adapterName)
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
        AdapterNameRules.Validate(adapterName, MemberName, WeightName);
        if (Find(adapterName) is not null)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' already has a prompt adapter named '{adapterName}'. Give each adapter on one member a distinct Name.",
                MemberName, adapterName);
        }
    }

    private string DescribeAdapters() =>
        _adapters.Count == 0 ? "none" : string.Join(", ", _adapters.Select(a => $"'{a.AdapterName}'"));
}
