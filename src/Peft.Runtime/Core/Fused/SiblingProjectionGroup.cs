using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>
/// Sibling projections run as one product: adapted linear layers of one module that take the same input in <c>forward</c>
/// (Llama's <c>q_proj</c>/<c>k_proj</c>/<c>v_proj</c>). Their frozen weights live in one concatenated buffer (each layer's
/// weight is a view of its rows, so merges and checkpoint loads write through), and when the group's first member is called
/// the group computes <c>y = x [W_1; …; W_k]ᵀ + b</c> in one product, adds every member's LoRA update with one more product
/// (<c>h = x [A_1; …; A_k]ᵀ</c>, then <c>y += h · blockdiag(s_i B_i)ᵀ</c>; a DoRA member's columns are then multiplied by
/// its row scale <c>m / ‖W + sBA‖</c> before the bias), and splits <c>y</c> by columns. The first member
/// returns its share; each other member, when called next with the same input tensor object, returns its share without
/// computing anything.
/// </summary>
/// <remarks>
/// <para>A member whose state needs its own product (a trained or quantized base weight, DoRA with training-time dropout,
/// several live adapters, scaling adapters, calibration capture) makes the whole group run as separate layers for that
/// forward; the result is the same function. Shares are handed out only for the very input object the first member saw,
/// and only once each: a forward that modifies its input in place between the sibling calls must not be fused.</para>
/// <para>The shares are column views of one <c>[rows, Σ out]</c> product (not contiguous): <c>view</c> calls that split the
/// batch or the feature dimension work, as in Llama's and BERT's attention; others need <c>reshape</c>.</para>
/// </remarks>
public sealed class SiblingProjectionGroup
{
    private readonly AdaptedLinear[] _members;
    private readonly long[] _outs;
    private readonly Tensor?[] _pending;
    private Tensor? _pendingInput;
    private Tensor? _weights;

    private SiblingProjectionGroup(string modulePath, IReadOnlyList<string> names, AdaptedLinear[] members)
    {
        ModulePath = modulePath;
        Members = names.ToArray();
        _members = members;
        _outs = members.Select(m => m.OutFeatures).ToArray();
        _pending = new Tensor?[members.Length];
    }

    /// <summary>Links <paramref name="members"/> into a group, or says why they cannot be one.</summary>
    internal static SiblingProjectionGroup? TryLink(string modulePath, IReadOnlyList<string> names, AdaptedLinear[] members, out string? reason)
    {
        reason = members.Select(m => m.InFeatures).Distinct().Count() > 1
            ? $"their input widths differ ({string.Join(", ", members.Select((m, i) => $"{names[i]}: {m.InFeatures}"))}), so they cannot take the same input"
            : members.Any(m => m.IsQuantized) ? "a member's base weight is quantized"
            : null;
        if (reason is not null)
        {
            return null;
        }

        var group = new SiblingProjectionGroup(modulePath, names, members);
        if (!group.ShareStorage())
        {
            reason = "their weights train, or lie on different devices or in different element types (only frozen weights of one device and type share a buffer)";
            return null;
        }

        foreach (var member in members)
        {
            member.Siblings?.Unlink();
            member.Siblings = group;
        }

        return group;
    }

    /// <summary>The path of the module that declares the group (empty for the root).</summary>
    public string ModulePath { get; }

    /// <summary>The member names, the first being the one that computes the product.</summary>
    public IReadOnlyList<string> Members { get; }

    /// <summary>How many forwards ran as one product (the others ran the members separately).</summary>
    public long FusedProducts { get; private set; }

    /// <summary>How many times the shared weight buffer was built: once when linked, then once after each move or conversion
    /// that replaced a member's weight.</summary>
    public int BufferBuilds { get; private set; }

    /// <summary>Why the last forward of the first member ran separately, or null when it ran fused.</summary>
    public string? LastFallbackReason { get; private set; }

    /// <summary>Detaches the members: each runs alone from now on (its weight stays a view of the shared buffer).</summary>
    internal void Unlink()
    {
        ClearPending();
        foreach (var member in _members)
        {
            if (ReferenceEquals(member.Siblings, this))
            {
                member.Siblings = null;
            }
        }
    }

    /// <summary>The member's forward, when the group can answer it: the fused product (first member) or a pending share
    /// (the others); null when the member must run alone.</summary>
    internal Tensor? RunOrTake(AdaptedLinear member, Tensor input)
    {
        int index = Array.IndexOf(_members, member);
        if (index > 0)
        {
            var share = _pending[index];
            _pending[index] = null;
            return share is not null && ReferenceEquals(input, _pendingInput) && !share.IsInvalid ? share : null;
        }

        ClearPending();
        var lowRank = new ILowRankFactors?[_members.Length];
        string? reason = Eligibility(input, lowRank);
        LastFallbackReason = reason;
        if (reason is not null)
        {
            return null;
        }

        var shares = Run(input, lowRank);
        for (int i = 1; i < shares.Length; i++)
        {
            _pending[i] = shares[i];
        }

        _pendingInput = input;
        FusedProducts++;
        return shares[0];
    }

    private string? Eligibility(Tensor input, ILowRankFactors?[] lowRank)
    {
        for (int i = 0; i < _members.Length; i++)
        {
            if (!_members[i].CanShareProduct(out lowRank[i]))
            {
                return $"member '{Members[i]}' needs its own product (a trained or quantized base weight, DoRA with training-time dropout, or adapters other than one LoRA or DoRA)";
            }
        }

        if (_members.Any(m => !m.WeightIsShared) && !ShareStorage())
        {
            return "the members' weights no longer share one device and element type";
        }

        var weights = _weights!;
        if (input.dtype != weights.dtype || input.device_type != weights.device_type || input.shape[^1] != weights.shape[1])
        {
            return "the input's element type, device or width differs from the weights'";
        }

        return null;
    }

    /// <summary>Concatenates the members' frozen weights into one buffer and makes each weight a view of its rows; false
    /// when the weights cannot share one (different devices or element types).</summary>
    private bool ShareStorage()
    {
        var first = _members[0].Weight;
        if (_members.Any(m => m.Weight.dtype != first.dtype || m.Weight.device_type != first.device_type || m.Weight.device_index != first.device_index || m.Weight.requires_grad))
        {
            return false;
        }

        using (no_grad())
        {
            var buffer = cat(_members.Select(m => (Tensor)m.Weight).ToArray(), 0);
            long offset = 0;
            for (int i = 0; i < _members.Length; i++)
            {
                _members[i].ShareWeightStorage(buffer.narrow(0, offset, _outs[i]));
                offset += _outs[i];
            }

            _weights?.Dispose();
            _weights = buffer;
            BufferBuilds++;
        }

        return true;
    }

    private Tensor[] Run(Tensor input, ILowRankFactors?[] lowRank)
    {
        using var scope = NewDisposeScope();
        long inFeatures = input.shape[^1];
        var x = input.Dimensions == 2 ? input : input.reshape(-1, inFeatures);
        Tensor? bias = null;
        if (_members.Any(m => m.Bias is not null))
        {
            bias = cat(_members.Select((m, i) => m.Bias is { } b ? (Tensor)b : zeros(_outs[i], dtype: x.dtype, device: x.device)).ToArray(), 0);
        }

        bool rescaled = lowRank.Any(a => a is IRowRescalingAdapter);
        var y = F.linear(x, _weights!, rescaled ? null : bias);
        if (lowRank.Any(a => a is not null))
        {
            AddLowRank(x, y, lowRank);
        }

        if (rescaled)
        {
            // DoRA: c ⊙ (W x + s B A x) on its columns (c = 1 on the others), then the bias, as AdaptedLinear's OneRescaled.
            var scale = cat(_members.Select((m, i) => lowRank[i] is IRowRescalingAdapter r ? r.RowScale(m.Weight) : ones(_outs[i], dtype: x.dtype, device: x.device)).ToArray(), 0);
            y = y * scale;
            if (bias is not null)
            {
                y.add_(bias);
            }
        }

        var shares = y.split(_outs, 1);
        var result = new Tensor[shares.Length];
        for (int i = 0; i < shares.Length; i++)
        {
            var shape = input.shape;
            shape[^1] = _outs[i];
            result[i] = (input.Dimensions == 2 ? shares[i] : shares[i].view(shape)).MoveToOuterDisposeScope();
        }

        return result;
    }

    /// <summary><c>y += h · blockdiag(s_i B_i)ᵀ</c> with <c>h = [dropout_i(x) A_iᵀ]</c> (one product when no dropout is
    /// active); a member without an adapter has a zero block.</summary>
    private void AddLowRank(Tensor x, Tensor y, ILowRankFactors?[] lowRank)
    {
        var adapters = lowRank.Where(a => a is not null).Select(a => a!).ToArray();
        long totalRank = adapters.Sum(a => a.Down.shape[0]);
        bool anyDropout = adapters.Any(a => ((nn.Module)a).training && a.Dropout > 0);
        var h = anyDropout
            ? cat(adapters.Select(a => F.dropout(x, a.Dropout, ((nn.Module)a).training).matmul(a.Down.t())).ToArray(), 1)
            : x.matmul(cat(adapters.Select(a => (Tensor)a.Down).ToArray(), 0).t());
        var rows = new Tensor[_members.Length];
        long before = 0;
        for (int i = 0; i < _members.Length; i++)
        {
            if (lowRank[i] is not { } adapter)
            {
                rows[i] = zeros(_outs[i], totalRank, dtype: x.dtype, device: x.device);
                continue;
            }

            long rank = adapter.Down.shape[0];
            var parts = new List<Tensor>(3);
            if (before > 0)
            {
                parts.Add(zeros(_outs[i], before, dtype: x.dtype, device: x.device));
            }

            parts.Add(adapter.Up * adapter.Scaling);
            if (totalRank - before - rank > 0)
            {
                parts.Add(zeros(_outs[i], totalRank - before - rank, dtype: x.dtype, device: x.device));
            }

            rows[i] = parts.Count == 1 ? parts[0] : cat(parts.ToArray(), 1);
            before += rank;
        }

        y.addmm_(h, cat(rows, 0).t());
    }

    private void ClearPending()
    {
        Array.Clear(_pending);
        _pendingInput = null;
    }
}
