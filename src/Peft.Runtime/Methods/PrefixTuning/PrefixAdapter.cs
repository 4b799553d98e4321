using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// PEFT's prefix encoder with <c>prefix_projection</c>: an embedding <c>[num_virtual_tokens, token_dim]</c> (N(0, 1), as
/// <c>nn.Embedding</c>) through <c>transform</c> = <c>Linear(token_dim, encoder_hidden_size) → tanh →
/// Linear(encoder_hidden_size, Σ 2·kv_width)</c>. One encoder serves every layer: the bottom layer's
/// <see cref="PrefixAdapter"/> owns it (so it is counted, trained and saved once), and each layer computes only its own
/// columns of the last linear layer.
/// </summary>
public sealed class PrefixEncoder : nn.Module
{
    private readonly Embedding embedding;
    private readonly Sequential transform;
    private readonly Linear _first;
    private readonly Linear _last;

    internal PrefixEncoder(int virtualTokens, long tokenDim, long hiddenSize, long tableWidth, bool zeroInit) : base("encoder")
    {
        embedding = nn.Embedding(virtualTokens, tokenDim);
        _first = nn.Linear(tokenDim, hiddenSize);
        _last = nn.Linear(hiddenSize, tableWidth);
        transform = nn.Sequential(("0", _first), ("1", nn.Tanh()), ("2", _last));
        if (zeroInit)
        {
            using var _ = no_grad();
            _last.weight.zero_();
            _last.bias!.zero_();
        }

        register_module(nameof(embedding), embedding);
        register_module(nameof(transform), transform);
    }

    /// <summary>The MLP's hidden activations <c>tanh(Linear(embedding))</c> [num_virtual_tokens, encoder_hidden_size].</summary>
    /// <returns>The activations.</returns>
    public Tensor Hidden() => tanh(_first.call(embedding.weight!));

    /// <summary>Columns <paramref name="offset"/> to <paramref name="offset"/> + <paramref name="width"/> of the table, from
    /// <see cref="Hidden"/>: only those rows of the last layer are multiplied.</summary>
    /// <param name="hidden">The hidden activations.</param>
    /// <param name="offset">The first column.</param>
    /// <param name="width">The number of columns.</param>
    /// <returns>[num_virtual_tokens, width].</returns>
    public Tensor Columns(Tensor hidden, long offset, long width) =>
        nn.functional.linear(hidden, _last.weight.narrow(0, offset, width), _last.bias!.narrow(0, offset, width));
}

/// <summary>
/// One layer's prefix (<see cref="PrefixTuningConfig"/>): columns <c>[offset, offset + 2·kv_width)</c> of the model's prefix
/// table, keys first then values, each laid out head by head as PEFT's <c>view(n, 2L, heads, head_dim)</c> reads them.
/// Without projection the layer owns its columns as the parameter <c>prefix</c>; with it they come from the shared
/// <see cref="PrefixEncoder"/>.
/// </summary>
public sealed class PrefixAdapter : AttentionAdapter
{
    private readonly Parameter? prefix;
    private readonly PrefixEncoder? encoder;
    // Held through a box, not as a module field: TorchSharp discovers module-typed fields of a module, and the encoder must
    // be registered (counted, trained, saved) once, by its owner.
    private readonly System.Runtime.CompilerServices.StrongBox<PrefixEncoder>? _shared;

    private PrefixAdapter(string adapterName, AttentionGeometry geometry, int virtualTokens, long columnOffset) : base(adapterName)
    {
        Geometry = geometry;
        VirtualTokens = virtualTokens;
        ColumnOffset = columnOffset;
    }

    private PrefixAdapter(string adapterName, AttentionGeometry geometry, int virtualTokens, long columnOffset, bool zeroInit)
        : this(adapterName, geometry, virtualTokens, columnOffset)
    {
        prefix = nn.Parameter(zeroInit ? zeros(virtualTokens, Width) : randn(virtualTokens, Width));
        register_parameter(nameof(prefix), prefix);
    }

    private PrefixAdapter(string adapterName, AttentionGeometry geometry, int virtualTokens, long columnOffset, PrefixEncoder shared, bool owns)
        : this(adapterName, geometry, virtualTokens, columnOffset)
    {
        if (owns)
        {
            encoder = shared;
            register_module(nameof(encoder), encoder);
        }

        _shared = new(shared);
    }

    /// <summary>The attention this prefix serves.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>Prefix positions.</summary>
    public int VirtualTokens { get; }

    /// <summary>This layer's first column in the model's table.</summary>
    public long ColumnOffset { get; }

    /// <summary>This layer's columns: <c>2 · kv_width</c>.</summary>
    public long Width => 2 * Geometry.KeyValueWidth;

    /// <summary>Whether the columns come from the shared MLP.</summary>
    public bool Projected => _shared is not null;

    /// <summary>The shared encoder when this adapter owns it (the bottom layer's), else null.</summary>
    public PrefixEncoder? Encoder => encoder;

    /// <summary>The layer's own columns (the parameter <c>prefix</c>) without projection, else null.</summary>
    public Parameter? OwnTable => prefix;

    /// <inheritdoc/>
    public override long PrefixLength => VirtualTokens;

    /// <summary>This layer's columns of the table [num_virtual_tokens, 2·kv_width] (keys then values).</summary>
    /// <returns>The columns (part of the autograd graph).</returns>
    public Tensor Table() => prefix is not null ? prefix.alias() : _shared!.Value!.Columns(_shared.Value.Hidden(), ColumnOffset, Width);

    /// <inheritdoc/>
    public override (Tensor Keys, Tensor Values) Prefix(long batch)
    {
        using var scope = NewDisposeScope();
        var table = Table();
        long n = VirtualTokens, heads = Geometry.KeyValueHeads, dim = Geometry.HeadDim, width = Geometry.KeyValueWidth;
        var keys = table.narrow(1, 0, width).view(n, heads, dim).permute(1, 0, 2).unsqueeze(0).expand(batch, -1, -1, -1);
        var values = table.narrow(1, width, width).view(n, heads, dim).permute(1, 0, 2).unsqueeze(0).expand(batch, -1, -1, -1);
        return (keys.MoveToOuterDisposeScope(), values.MoveToOuterDisposeScope());
    }

    internal static PrefixAdapter Direct(string adapterName, AttentionGeometry geometry, int virtualTokens, long columnOffset, bool zeroInit) =>
        new(adapterName, geometry, virtualTokens, columnOffset, zeroInit);

    internal static PrefixAdapter Through(string adapterName, AttentionGeometry geometry, int virtualTokens, long columnOffset, PrefixEncoder shared, bool owns) =>
        new(adapterName, geometry, virtualTokens, columnOffset, shared, owns);
}
