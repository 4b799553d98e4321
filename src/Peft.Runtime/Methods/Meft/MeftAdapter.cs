using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// MEFT's adapter, laid out as the authors' <c>Adapter</c> so its keys read the same: optional <c>LayerNorm</c>, then
/// <c>dense1</c> (d → r), activation, dropout, <c>dense2</c> (r → d); weights N(0, 0.02²), biases zero. Each block holds two:
/// the reversible one (<c>rev_adapters.&lt;name&gt;</c>, the <c>G</c> of MEFT₁ or the <c>F</c> of MEFT₂) and one beside the block's
/// feed-forward sub-layer (<c>output_adapters.adapters.&lt;name&gt;</c>, <see cref="Apply"/>: output + a(input), the authors'
/// <c>ffn_adapter</c>). Not mergeable.
/// </summary>
public sealed class MeftAdapter : SublayerAdapter
{
    private readonly LayerNorm? LayerNorm;
    private readonly Linear dense1;
    private readonly Linear dense2;
    private readonly string _activation;
    private readonly double _dropout;

    /// <summary>Creates the adapter on <paramref name="hidden"/> features.</summary>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="config">The configuration (validated).</param>
    /// <param name="hidden">The block's width.</param>
    /// <param name="layerNorm">Whether to normalise first (the reversible adapter with <see cref="MeftConfig.LayernormInAdapter"/>).</param>
    public MeftAdapter(string adapterName, MeftConfig config, long hidden, bool layerNorm) : base(adapterName)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        dense1 = nn.Linear(hidden, config.AdapterBottleneckDim);
        dense2 = nn.Linear(config.AdapterBottleneckDim, hidden);
        if (layerNorm)
        {
            LayerNorm = nn.LayerNorm(hidden);
            register_module(nameof(LayerNorm), LayerNorm);
        }

        register_module(nameof(dense1), dense1);
        register_module(nameof(dense2), dense2);
        _activation = config.HiddenAct;
        _dropout = config.AdapterDropout;
        using var _ = no_grad();
        foreach (var linear in new[] { dense1, dense2 })
        {
            nn.init.normal_(linear.weight!, 0.0, MeftConfig.InitStd);
            nn.init.zeros_(linear.bias!);
        }
    }

    /// <summary>The down projection.</summary>
    public Linear Dense1 => dense1;

    /// <summary>The up projection.</summary>
    public Linear Dense2 => dense2;

    /// <summary><c>dense2(dropout(act(dense1(LN?(h)))))</c>, in the input's dtype.</summary>
    /// <param name="hidden">The input [..., d].</param>
    /// <returns>The adapter's output [..., d].</returns>
    public Tensor Forward(Tensor hidden)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        using var scope = NewDisposeScope();
        var h = hidden.to_type(dense1.weight!.dtype);
        if (LayerNorm is not null) h = LayerNorm.call(h);
        h = dense1.call(h);
        h = _activation switch
        {
            "relu" => nn.functional.relu(h),
            "silu" => nn.functional.silu(h),
            "tanh" => h.tanh(),
            _ => nn.functional.gelu(h),
        };
        if (_dropout > 0) h = nn.functional.dropout(h, _dropout, training);
        return dense2.call(h).to_type(hidden.dtype).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor Apply(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        using var scope = NewDisposeScope();
        return (output + Forward(input)).MoveToOuterDisposeScope();
    }
}
