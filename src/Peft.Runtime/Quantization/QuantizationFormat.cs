namespace Peft;

/// <summary>How a frozen base weight is stored (QLoRA): the layer keeps the codes and dequantizes in its forward.</summary>
public enum QuantizationFormat
{
    /// <summary>8-bit integers with one float32 absmax scale per output row (symmetric, round to nearest):
    /// <c>out·in + 4·out</c> bytes, 0.25x of float32.</summary>
    Int8,

    /// <summary>QLoRA's 4-bit NormalFloat: 16 normal-quantile codes, one absmax per block of 64 weights, the absmaxes
    /// quantized again (double quantization: int8 around their mean, one float32 scale per 256); about 0.129x of float32.</summary>
    NF4,
}
