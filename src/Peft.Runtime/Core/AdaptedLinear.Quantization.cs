using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft;

/// <summary>A linear layer's frozen base weight stored quantized (QLoRA): <see cref="QuantizeBase"/>, <see cref="DequantizeBase"/>.</summary>
public sealed partial class AdaptedLinear
{
    private QuantizedWeight? _quantized;

    /// <summary>The quantized base weight, or null when the weight is dense.</summary>
    public QuantizedWeight? QuantizedBase => _quantized;

    /// <summary>
    /// Stores the frozen base weight quantized (<see cref="QuantizationFormat"/>) and drops the dense one: the forward then
    /// dequantizes for each product (<see cref="DequantizingLinearFunction"/>, which keeps no dense copy for the backward),
    /// the layer's <c>weight</c> parameter is replaced by its buffers (<c>weight_nf4_codes</c>, ...), and additive and scaling
    /// adapters (LoRA, LoKr, LoHa, VeRA, IA3) train on top. The bias stays as it is.
    /// </summary>
    /// <param name="format">The storage format.</param>
    /// <returns>The bytes the quantized weight occupies.</returns>
    /// <remarks>A base holding a LoftQ residual (<see cref="IQuantizedResidualAdapter"/>) is stored from the codes the adapter's
    /// initialisation computed, in the format it was fitted for, so the stored weight is exactly the residual the adapter
    /// complements.</remarks>
    /// <exception cref="PeftConfigurationException">The weight is already quantized or trainable, an adapter is merged into it,
    /// it holds a PiSSA/OLoRA residual (or a LoftQ residual fitted for another format), or a live adapter needs the dense
    /// weight (DoRA, HiRA).</exception>
    public long QuantizeBase(QuantizationFormat format)
    {
        if (_quantized is not null)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' already holds its base weight as {_quantized.Format}; call DequantizeBase() before quantizing it again.", MemberName, null);
        }

        if (MergedAdapters.Count > 0)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' has adapter(s) {string.Join(", ", MergedAdapters.Select(a => $"'{a}'"))} merged into its weight; quantizing would fold them into the codes for good. Unmerge() first.",
                MemberName, null);
        }

        if (_weight.requires_grad)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' has a trainable base weight; a quantized weight is frozen. Freeze it (or let adapters freeze the base) before QuantizeBase().",
                MemberName, null);
        }

        EnsureDenseBaseFor(LiveAdapters.Where(a => a is IRowRescalingAdapter or IWeightRewritingAdapter), format);
        var quantized = HoldsResidualBase ? QuantizedResidualFor(format) : QuantizedWeight.Quantize(_weight, format);
        var dense = _weight;
        _internal_params.Remove(WeightName);
        foreach (var (name, buffer) in quantized.Buffers)
        {
            register_buffer(name, buffer);
        }

        _quantized = quantized;
        _weight = new Parameter(empty(0, dtype: dense.dtype, device: dense.device), requires_grad: false);
        dense.Dispose();
        return quantized.StorageBytes;
    }

    /// <summary>
    /// Replaces the quantized base weight by its dense dequantized value (a frozen <c>weight</c> parameter again), so that
    /// adapters can merge into it: a merged QLoRA model is a dense checkpoint. The values are the quantized ones; the
    /// original weight is not recovered.
    /// </summary>
    /// <returns>True when the layer was quantized.</returns>
    public bool DequantizeBase()
    {
        if (_quantized is not { } quantized)
        {
            return false;
        }

        using var dense = quantized.Dequantize();
        var weight = new Parameter(dense.clone(), requires_grad: false);
        foreach (var name in quantized.Buffers.Keys)
        {
            _internal_buffers.Remove(name);
        }

        foreach (var buffer in quantized.Buffers.Values)
        {
            buffer.Dispose();
        }

        _weight.Dispose();
        _quantized = null;
        _weight = weight;
        register_parameter(WeightName, weight);
        return true;
    }

    /// <inheritdoc />
    private protected override BaseFingerprint CurrentBaseFingerprint()
    {
        if (_quantized is null)
        {
            return BaseFingerprint.Of(_weight);
        }

        using var dense = _quantized.Dequantize();
        return BaseFingerprint.Of(dense);
    }

    /// <summary>The quantized residual a LoftQ adapter computed for this base (checked against the residual the layer
    /// recorded), or an error naming the member and the fix for any other residual.</summary>
    private QuantizedWeight QuantizedResidualFor(QuantizationFormat format)
    {
        var rewriters = Adapters.Where(a => a is IBaseRewritingAdapter { RewritesBase: true }).ToList();
        if (rewriters.Count != 1 || rewriters[0] is not IQuantizedResidualAdapter { ResidualFormat: { } fitted } source)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' holds the residual of a base-rewriting initialisation ({string.Join(", ", rewriters.Select(a => ((IBaseRewritingAdapter)a).BaseRewriteName))}); " +
                "quantizing it is not supported here (the residual is checked against its dense values). Quantize a base whose adapters do not rewrite it, " +
                "use LoRAInit.LoftQ (whose residual is the quantized weight), or keep this one dense.",
                MemberName, null);
        }

        var adapter = rewriters[0];
        if (fitted != format)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}': adapter '{adapter.AdapterName}' ({source.BaseRewriteName}) fitted its residual to {fitted} quantization, so the base " +
                $"cannot be stored as {format} (the adapter would complement another weight). Call QuantizeBase({nameof(QuantizationFormat)}.{fitted}), or change the adapter's LoftQBits.",
                MemberName, adapter.AdapterName);
        }

        var quantized = source.TakeQuantizedResidual() ?? throw new PeftConfigurationException(
            $"Member '{MemberName}': adapter '{adapter.AdapterName}' ({source.BaseRewriteName}) handed its quantized residual to the base already (quantized, then " +
            "dequantized); storing it again from the dense values would not reproduce it. Keep the base quantized, or load the original base and call ReinitializeFromBase().",
            MemberName, adapter.AdapterName);
        if (quantized.Device.type != _weight.device.type || quantized.Device.index != _weight.device.index)
        {
            var moved = quantized.Rebind(name => quantized.Buffers[name].to(_weight.device));
            foreach (var buffer in quantized.Buffers.Values) buffer.Dispose();
            quantized = moved;
        }

        using var dense = quantized.Dequantize();
        if (!BaseFingerprint.Of(dense).Matches(CurrentBaseFingerprint()))
        {
            foreach (var buffer in quantized.Buffers.Values) buffer.Dispose();
            throw new PeftConfigurationException(
                $"Member '{MemberName}': the base weight is no longer the residual adapter '{adapter.AdapterName}' ({source.BaseRewriteName}) quantized " +
                "(a base checkpoint loaded since?). Load the original base weights and call ReinitializeFromBase() before QuantizeBase().",
                MemberName, adapter.AdapterName);
        }

        return quantized;
    }

    /// <inheritdoc />
    protected override Device BaseDevice => _quantized?.Device ?? _weight.device;

    /// <inheritdoc />
    protected override ScalarType BaseType => _quantized?.ComputeType ?? _weight.dtype;

    /// <summary>The base product <c>x Wᵀ + b</c> from the dense or the quantized weight, with the layer's bias or a live
    /// override of it.</summary>
    private Tensor BaseProduct(Tensor x, Tensor? bias) =>
        _quantized is null ? F.linear(x, _weight, bias) : DequantizingLinearFunction.Apply(x, _quantized, bias);

    private void RebindQuantized()
    {
        if (_quantized is not null)
        {
            _quantized = _quantized.Rebind(name => _internal_buffers[name].Item1);
        }
    }

    private void EnsureDenseBaseFor(IEnumerable<PeftAdapter> needDenseWeight, QuantizationFormat? format = null)
    {
        var first = needDenseWeight.FirstOrDefault();
        format ??= _quantized?.Format;
        if (first is not null && format is not null)
        {
            throw new PeftConfigurationException(
                $"Adapter '{first.AdapterName}' ({first.Method.Name}) on member '{MemberName}' needs the dense base weight, which is stored as {format}: " +
                "a quantized base supports additive and scaling adapters (LoRA, LoKr, LoHa, VeRA, IA3). Call DequantizeBase(), or use one of those.",
                MemberName, first.AdapterName);
        }
    }

    private PeftConfigurationException QuantizedBaseError(string operation) => new(
        $"Member '{MemberName}' holds its base weight quantized ({_quantized!.Format}), so {operation} is not possible: call DequantizeBase() first " +
        "(merging a QLoRA model is DequantizeBase() then Merge(), which gives a dense checkpoint).",
        MemberName, null);
}
