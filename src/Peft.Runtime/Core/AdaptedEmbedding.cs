using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// An input embedding layer with named adapters. It registers the wrapped <see cref="Embedding"/>'s weight under its own
/// name (<c>weight</c>, so base checkpoint keys are unchanged) and each adapter as a child module named by the adapter.
/// </summary>
/// <remarks>
/// <para>With a live prefix adapter (<see cref="IPrefixAdapter"/>, prompt tuning), token ids <c>[B, T]</c> map to
/// <c>[B, V + T, dim]</c>: the prefix is prepended. Disabled, or with no live prefix, the output is the base embedding
/// <c>[B, T, dim]</c>. One prefix is active at a time (the first one added, as in PEFT).</para>
/// <para>A live position-offset adapter (<see cref="IPositionOffsetAdapter"/>, DePT) adds its table <c>[S, dim]</c> to the
/// token embeddings before the prefix is prepended; the input must then hold exactly S tokens. One offset is active at a
/// time; an adapter may be both (DePT's prompt and table).</para>
/// <para>Prefixes are not merged: <see cref="AdaptedLayer.Merge"/> leaves them acting.</para>
/// </remarks>
public sealed class AdaptedEmbedding : AdaptedLayer
{
    private readonly Embedding _embedding;
    private Parameter _weight;
    private IPrefixAdapter? _prefix;
    private IPositionOffsetAdapter? _offset;

    private AdaptedEmbedding(Embedding embedding, Parameter weight, string memberName)
        : base(nameof(AdaptedEmbedding), memberName)
    {
        _embedding = embedding;
        _weight = weight;

        // TorchSharp's to(deviceType) skips a module whose recorded device equals the target; record the real one.
        _deviceType = weight.device_type;
        _deviceIndex = weight.device_index;
        register_parameter(WeightName, weight);
    }

    /// <summary>
    /// Wraps the <see cref="Embedding"/> held by a member (<see cref="PeftLayers.Wrap"/> calls this for embeddings).
    /// </summary>
    /// <param name="embedding">An <see cref="Embedding"/>, or an <see cref="AdaptedEmbedding"/> (returned as is).</param>
    /// <param name="memberName">The member name, used in messages.</param>
    /// <returns>The wrapper.</returns>
    /// <exception cref="PeftConfigurationException"><paramref name="embedding"/> is null or not an embedding layer.</exception>
    public static AdaptedEmbedding Wrap(nn.Module<Tensor, Tensor>? embedding, string memberName)
    {
        ArgumentNullException.ThrowIfNull(memberName);
        switch (embedding)
        {
            case AdaptedEmbedding wrapped:
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
                            $"Member '{memberName}' holds an Embedding without a 2-D weight; it cannot be adapted. Assign a layer created with nn.Embedding(vocabulary, dim).",
                            memberName, null);
                    }

                    return new AdaptedEmbedding(e, weight, memberName);
                }

            default:
                throw PeftLayers.CannotWrap(embedding, memberName, "the model's input embedding (nn.Embedding(vocabulary, dim))");
        }
    }

    /// <inheritdoc />
    public override PeftLayerKind Kind => PeftLayerKind.Embedding;

    /// <summary>The base embedding weight <c>[vocabulary, dim]</c>, registered as <c>weight</c>.</summary>
    public override Parameter Weight => _weight;

    /// <summary>Embeddings have no bias: null.</summary>
    public override Parameter? Bias => null;

    /// <summary>The vocabulary size.</summary>
    public override long InFeatures => _weight.shape[0];

    /// <summary>The embedding size.</summary>
    public override long OutFeatures => _weight.shape[1];

    /// <summary>The vocabulary size.</summary>
    public long NumEmbeddings => _weight.shape[0];

    /// <summary>The embedding size.</summary>
    public long EmbeddingDim => _weight.shape[1];

    /// <summary>The name of the active prefix (prompt) adapter, or null.</summary>
    public string? ActiveAdapter => ActiveAdapters.Count > 0 ? ActiveAdapters[0] : null;

    /// <summary>The number of positions the forward currently prepends (0 when disabled or no prefix is live).</summary>
    public int VirtualTokenCount => _prefix?.Length ?? 0;

    /// <summary>The number of token positions the live offset adapter requires (<see cref="IPositionOffsetAdapter.Positions"/>),
    /// or null when none is live: inputs must then hold exactly that many tokens.</summary>
    public int? RequiredInputLength => _offset?.Positions;

    /// <summary>Makes the named adapter the active one, or none when <paramref name="adapterName"/> is null.</summary>
    /// <param name="adapterName">An adapter name on this layer, or null.</param>
    /// <exception cref="PeftConfigurationException">The layer has no adapter with that name.</exception>
    public void SetActiveAdapter(string? adapterName)
    {
        if (adapterName is null)
        {
            SetActiveAdapters();
        }
        else
        {
            SetActiveAdapters(adapterName);
        }
    }

    /// <summary>
    /// Embeds token ids and prepends the live prefix: <c>[B, T]</c> → <c>[B, V + T, dim]</c> (or <c>[T]</c> →
    /// <c>[V + T, dim]</c>); without a live prefix the result is the base embedding.
    /// </summary>
    /// <param name="input">Token ids.</param>
    /// <returns>The embeddings.</returns>
    public override Tensor forward(Tensor input)
    {
        EnsureUnmergedWhenDisabled();
        var embedded = _embedding.forward(input);
        if (_offset is { } offset)
        {
            embedded = AddOffset(embedded, offset);
        }

        var prefix = _prefix;
        if (prefix is null)
        {
            return embedded;
        }

        using (embedded)
        {
            using var prompt = prefix.ComputePrefix();
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

            expandShape[^2] = prefix.Length;
            expandShape[^1] = shape[^1];
            using var expanded = source.expand(expandShape);
            return torch.cat(new[] { expanded, embedded }, shape.Length - 2);
        }
    }

    private Tensor AddOffset(Tensor embedded, IPositionOffsetAdapter offset)
    {
        long length = embedded.Dimensions >= 2 ? embedded.shape[^2] : 1;
        if (length != offset.Positions)
        {
            var adapter = (PeftAdapter)offset;
            embedded.Dispose();
            throw new PeftConfigurationException(
                $"Adapter '{adapter.AdapterName}' ({adapter.Method.Name}) on member '{MemberName}' adds a table over exactly {offset.Positions} token positions, " +
                $"but the input has {length} positions. " +
                $"Pad or truncate every input to {offset.Positions} tokens (and its attention mask with it), or create the adapter with that input length.",
                MemberName, adapter.AdapterName);
        }

        using (embedded)
        {
            using var table = offset.ComputeOffset();
            using var cast = table.dtype == embedded.dtype ? null : table.to(embedded.dtype);
            return embedded + (cast ?? table);
        }
    }

    /// <inheritdoc />
    private protected override void ValidateActiveSet(IReadOnlyList<PeftAdapter> active)
    {
        var offsets = active.Where(a => a is IPositionOffsetAdapter).ToList();
        if (offsets.Count > 1)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' can add only one position table, but adapters {string.Join(", ", offsets.Select(p => $"'{p.AdapterName}'"))} were all requested. Activate one of them.",
                MemberName, offsets[1].AdapterName);
        }

        var prefixes = active.Where(a => a is IPrefixAdapter).ToList();
        if (prefixes.Count > 1)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' can prepend only one prompt, but adapters {string.Join(", ", prefixes.Select(p => $"'{p.AdapterName}'"))} were all requested. Activate one of them.",
                MemberName, prefixes[1].AdapterName);
        }
    }

    /// <inheritdoc />
    private protected override void OnLiveChanged()
    {
        var live = LiveAdapters;
        _prefix = live.OfType<IPrefixAdapter>().FirstOrDefault();
        _offset = live.OfType<IPositionOffsetAdapter>().FirstOrDefault();
        var other = live.FirstOrDefault(a => a is not IPrefixAdapter && a is not IPositionOffsetAdapter);
        if (other is not null)
        {
            throw new PeftConfigurationException(
                $"Adapter '{other.AdapterName}' ({other.Method.Name}) on member '{MemberName}' has no capability an embedding layer can apply.",
                MemberName, other.AdapterName);
        }
    }

    /// <summary>Moves or converts the wrapped embedding and the adapters, then refreshes the cached weight.</summary>
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
}
