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
    /// <exception cref="PeftConfigurationException">The weight is already quantized or trainable, an adapter is merged into it,
    /// it holds a PiSSA/OLoRA residual, or a live adapter needs the dense weight (DoRA, HiRA).</exception>
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

        if (HoldsResidualBase)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' holds the residual of a base-rewriting initialisation (PiSSA, OLoRA); quantizing it is not supported here " +
                "(the residual is checked against its dense values). Quantize a base whose adapters do not rewrite it, or keep this one dense.",
                MemberName, null);
        }

        if (_weight.requires_grad)
        {
            throw new PeftConfigurationException(
                $"Member '{MemberName}' has a trainable base weight; a quantized weight is frozen. Freeze it (or let adapters freeze the base) before QuantizeBase().",
                MemberName, null);
        }

        EnsureDenseBaseFor(LiveAdapters.Where(a => a is IRowRescalingAdapter or IWeightRewritingAdapter), format);
        var quantized = QuantizedWeight.Quantize(_weight, format);
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
