using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A frozen <c>[out, in]</c> linear weight stored quantized (<see cref="QuantizationFormat"/>): the codes and scales are
/// buffers of the owning layer (so device moves, <c>state_dict</c> and disposal follow the layer), and
/// <see cref="Dequantize"/> rebuilds the dense weight for one product.
/// </summary>
/// <remarks>
/// NF4 follows QLoRA: the flattened weight is cut into blocks of <see cref="Nf4BlockSize"/>, each divided by its absmax and
/// rounded to the nearest of the 16 <see cref="Nf4Codebook"/> codes (two 4-bit codes per byte, the first in the high nibble,
/// as bitsandbytes packs them); the float32 absmaxes are stored again quantized (<see cref="AbsmaxBlockSize"/> per block,
/// int8 around their mean with one float32 scale per block). bitsandbytes quantizes the absmaxes with its 8-bit dynamic map
/// instead; this storage is this library's own (a PEFT adapter file never holds the base), so no bitsandbytes file is read.
/// Int8 is symmetric round-to-nearest with one absmax scale per output row (LLM.int8's storage without its outlier split).
/// </remarks>
public sealed class QuantizedWeight
{
    /// <summary>Weights per NF4 absmax block (QLoRA's 64).</summary>
    public const int Nf4BlockSize = 64;

    /// <summary>Absmaxes per block of the second quantization (QLoRA's 256).</summary>
    public const int AbsmaxBlockSize = 256;

    private readonly Dictionary<string, Tensor> _buffers;

    private QuantizedWeight(QuantizationFormat format, long outFeatures, long inFeatures, Dictionary<string, Tensor> buffers)
    {
        Format = format;
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        _buffers = buffers;
    }

    /// <summary>The storage format.</summary>
    public QuantizationFormat Format { get; }

    /// <summary>The weight's rows.</summary>
    public long OutFeatures { get; }

    /// <summary>The weight's columns.</summary>
    public long InFeatures { get; }

    /// <summary>The buffers by the names the layer registers them under (<c>weight_nf4_codes</c>, ...).</summary>
    public IReadOnlyDictionary<string, Tensor> Buffers => _buffers;

    /// <summary>The bytes the buffers occupy.</summary>
    public long StorageBytes => _buffers.Values.Sum(t => t.numel() * t.ElementSize);

    /// <summary>The element type <see cref="Dequantize"/> returns: the scales' type (float32 unless the layer was converted).</summary>
    public ScalarType ComputeType => _buffers[Format == QuantizationFormat.NF4 ? "weight_nf4_absmax_scale" : "weight_int8_scale"].dtype;

    /// <summary>The device of the buffers.</summary>
    public Device Device => _buffers.Values.First().device;

    /// <summary>The buffer names a format registers.</summary>
    /// <param name="format">The format.</param>
    /// <returns>The names.</returns>
    public static IReadOnlyList<string> BufferNames(QuantizationFormat format) => format == QuantizationFormat.NF4
        ? new[] { "weight_nf4_codes", "weight_nf4_absmax", "weight_nf4_absmax_scale", "weight_nf4_absmax_offset" }
        : new[] { "weight_int8", "weight_int8_scale" };

    /// <summary>The bytes <paramref name="format"/> stores for an <c>[out, in]</c> weight (what <see cref="StorageBytes"/> will be).</summary>
    /// <param name="format">The format.</param>
    /// <param name="outFeatures">Rows.</param>
    /// <param name="inFeatures">Columns.</param>
    /// <returns>Bytes.</returns>
    public static long StorageBytesFor(QuantizationFormat format, long outFeatures, long inFeatures)
    {
        long n = outFeatures * inFeatures;
        if (format == QuantizationFormat.Int8)
        {
            return n + 4 * outFeatures;
        }

        long blocks = (n + Nf4BlockSize - 1) / Nf4BlockSize;
        long absmaxBlocks = (blocks + AbsmaxBlockSize - 1) / AbsmaxBlockSize;
        return blocks * Nf4BlockSize / 2 + absmaxBlocks * AbsmaxBlockSize + 4 * absmaxBlocks + 4;
    }

    /// <summary>Quantizes <paramref name="weight"/> (any floating type; computed in float32) without gradient.</summary>
    /// <param name="weight">The dense weight <c>[out, in]</c>.</param>
    /// <param name="format">The format.</param>
    /// <returns>The quantized weight; its buffers are new tensors on the weight's device (float32 scales).</returns>
    public static QuantizedWeight Quantize(Tensor weight, QuantizationFormat format)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Dimensions != 2)
        {
            throw new ArgumentException($"A quantized linear weight is 2-D [out, in]; got [{string.Join(", ", weight.shape)}].", nameof(weight));
        }

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var w = weight.to(ScalarType.Float32);
        if (!w.isfinite().all().item<bool>())
        {
            throw new ArgumentException("The weight holds NaN or infinite values; quantizing them would hide them in the codes.", nameof(weight));
        }

        var buffers = format switch
        {
            QuantizationFormat.NF4 => QuantizeNf4(w),
            QuantizationFormat.Int8 => QuantizeInt8(w),
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Unknown quantization format."),
        };
        foreach (var t in buffers.Values)
        {
            t.MoveToOuterDisposeScope();
        }

        return new QuantizedWeight(format, weight.shape[0], weight.shape[1], buffers);
    }

    /// <summary>Rebuilds the dense weight <c>[out, in]</c> in <see cref="ComputeType"/>; the caller disposes it.</summary>
    /// <returns>A new tensor without gradient.</returns>
    public Tensor Dequantize()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var dense = Format == QuantizationFormat.NF4 ? DequantizeNf4() : DequantizeInt8();
        return dense.MoveToOuterDisposeScope();
    }

    /// <summary>The same weight over the layer's current buffers (after a device move or dtype conversion replaced them).</summary>
    /// <param name="lookup">The layer's buffer by name.</param>
    /// <returns>A new descriptor.</returns>
    public QuantizedWeight Rebind(Func<string, Tensor> lookup)
    {
        ArgumentNullException.ThrowIfNull(lookup);
        return new QuantizedWeight(Format, OutFeatures, InFeatures, BufferNames(Format).ToDictionary(n => n, lookup));
    }

    private static Dictionary<string, Tensor> QuantizeNf4(Tensor w)
    {
        long n = w.numel();
        long blocks = (n + Nf4BlockSize - 1) / Nf4BlockSize;
        var flat = PadTo(w.flatten(), blocks * Nf4BlockSize).view(blocks, Nf4BlockSize);
        var absmax = flat.abs().amax(new long[] { 1 });
        var normalized = flat / absmax.clamp_min(float.Epsilon).unsqueeze(1);
        var codes = Nf4Codebook.Nearest(normalized).view(-1, 2);
        var packed = codes[TensorIndex.Colon, 0].bitwise_left_shift(4).bitwise_or_(codes[TensorIndex.Colon, 1]);

        // Double quantization: the absmaxes around their mean, int8 with one float32 scale per block of 256.
        var offset = absmax.mean().reshape(1);
        long absmaxBlocks = (blocks + AbsmaxBlockSize - 1) / AbsmaxBlockSize;
        var centered = PadTo(absmax - offset, absmaxBlocks * AbsmaxBlockSize).view(absmaxBlocks, AbsmaxBlockSize);
        var scale = centered.abs().amax(new long[] { 1 }).div_(127);
        var q = (centered / scale.clamp_min(float.Epsilon).unsqueeze(1)).round_().clamp_(-127, 127).to(ScalarType.Int8).flatten();
        return new Dictionary<string, Tensor>
        {
            ["weight_nf4_codes"] = packed.contiguous(),
            ["weight_nf4_absmax"] = q,
            ["weight_nf4_absmax_scale"] = scale.contiguous(),
            ["weight_nf4_absmax_offset"] = offset.contiguous(),
        };
    }

    private static Dictionary<string, Tensor> QuantizeInt8(Tensor w)
    {
        var scale = w.abs().amax(new long[] { 1 }).div_(127);
        var q = (w / scale.clamp_min(float.Epsilon).unsqueeze(1)).round_().clamp_(-127, 127).to(ScalarType.Int8);
        return new Dictionary<string, Tensor> { ["weight_int8"] = q.contiguous(), ["weight_int8_scale"] = scale.contiguous() };
    }

    private Tensor DequantizeNf4()
    {
        var scale = _buffers["weight_nf4_absmax_scale"];
        var dtype = scale.dtype;
        var q = _buffers["weight_nf4_absmax"].to(dtype).view(scale.shape[0], AbsmaxBlockSize);
        long n = OutFeatures * InFeatures;
        long blocks = (n + Nf4BlockSize - 1) / Nf4BlockSize;
        var absmax = (q * scale.unsqueeze(1)).flatten()[TensorIndex.Slice(0, blocks)] + _buffers["weight_nf4_absmax_offset"].to(dtype);
        var packed = _buffers["weight_nf4_codes"];
        var high = packed.bitwise_right_shift(4);
        var low = packed.bitwise_and(15);
        var index = stack(new[] { high, low }, 1).flatten().to(ScalarType.Int64);
        var codebook = Nf4Codebook.Tensor(packed.device).to(dtype);
        var values = codebook.index_select(0, index).view(blocks, Nf4BlockSize) * absmax.unsqueeze(1);
        return values.flatten()[TensorIndex.Slice(0, n)].view(OutFeatures, InFeatures);
    }

    private Tensor DequantizeInt8()
    {
        var scale = _buffers["weight_int8_scale"];
        return _buffers["weight_int8"].to(scale.dtype) * scale.unsqueeze(1);
    }

    private static Tensor PadTo(Tensor flat, long length) =>
        flat.shape[0] == length ? flat : cat(new[] { flat, zeros(length - flat.shape[0], dtype: flat.dtype, device: flat.device) });
}
