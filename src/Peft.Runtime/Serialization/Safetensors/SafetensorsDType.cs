using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>The element types this library reads and writes in safetensors files (the spelling in the header is the member name).</summary>
public enum SafetensorsDType
{
    /// <summary>64-bit IEEE float (<c>"F64"</c>, <see cref="ScalarType.Float64"/>).</summary>
    F64,

    /// <summary>32-bit IEEE float (<c>"F32"</c>, <see cref="ScalarType.Float32"/>).</summary>
    F32,

    /// <summary>16-bit IEEE half float (<c>"F16"</c>, <see cref="ScalarType.Float16"/>).</summary>
    F16,

    /// <summary>16-bit brain float (<c>"BF16"</c>, <see cref="ScalarType.BFloat16"/>).</summary>
    BF16,

    /// <summary>64-bit signed integer (<c>"I64"</c>, <see cref="ScalarType.Int64"/>).</summary>
    I64,

    /// <summary>32-bit signed integer (<c>"I32"</c>, <see cref="ScalarType.Int32"/>).</summary>
    I32,

    /// <summary>16-bit signed integer (<c>"I16"</c>, <see cref="ScalarType.Int16"/>).</summary>
    I16,

    /// <summary>8-bit signed integer (<c>"I8"</c>, <see cref="ScalarType.Int8"/>).</summary>
    I8,

    /// <summary>8-bit unsigned integer (<c>"U8"</c>, <see cref="ScalarType.Byte"/>).</summary>
    U8,

    /// <summary>Boolean stored as one byte, 0 or 1 (<c>"BOOL"</c>, <see cref="ScalarType.Bool"/>).</summary>
    BOOL,
}

/// <summary>Conversions between <see cref="SafetensorsDType"/>, TorchSharp's <see cref="ScalarType"/> and header spellings.</summary>
public static class SafetensorsDTypeExtensions
{
    /// <summary>The size in bytes of one element.</summary>
    /// <param name="dtype">The element type.</param>
    /// <returns>8, 4, 2 or 1.</returns>
    public static int GetElementSize(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 => 2,
        SafetensorsDType.I8 or SafetensorsDType.U8 or SafetensorsDType.BOOL => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };

    /// <summary>The TorchSharp element type with the same memory layout.</summary>
    /// <param name="dtype">The element type.</param>
    /// <returns>The matching <see cref="ScalarType"/>.</returns>
    public static ScalarType ToScalarType(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F64 => ScalarType.Float64,
        SafetensorsDType.F32 => ScalarType.Float32,
        SafetensorsDType.F16 => ScalarType.Float16,
        SafetensorsDType.BF16 => ScalarType.BFloat16,
        SafetensorsDType.I64 => ScalarType.Int64,
        SafetensorsDType.I32 => ScalarType.Int32,
        SafetensorsDType.I16 => ScalarType.Int16,
        SafetensorsDType.I8 => ScalarType.Int8,
        SafetensorsDType.U8 => ScalarType.Byte,
        SafetensorsDType.BOOL => ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };

    /// <summary>Maps a TorchSharp element type to its safetensors dtype.</summary>
    /// <param name="scalarType">The TorchSharp element type.</param>
    /// <param name="dtype">The safetensors dtype, when there is one.</param>
    /// <returns><see langword="false"/> for types this library cannot store (complex, quantized, ...).</returns>
    public static bool TryGetSafetensorsDType(this ScalarType scalarType, out SafetensorsDType dtype)
    {
        switch (scalarType)
        {
            case ScalarType.Float64: dtype = SafetensorsDType.F64; return true;
            case ScalarType.Float32: dtype = SafetensorsDType.F32; return true;
            case ScalarType.Float16: dtype = SafetensorsDType.F16; return true;
            case ScalarType.BFloat16: dtype = SafetensorsDType.BF16; return true;
            case ScalarType.Int64: dtype = SafetensorsDType.I64; return true;
            case ScalarType.Int32: dtype = SafetensorsDType.I32; return true;
            case ScalarType.Int16: dtype = SafetensorsDType.I16; return true;
            case ScalarType.Int8: dtype = SafetensorsDType.I8; return true;
            case ScalarType.Byte: dtype = SafetensorsDType.U8; return true;
            case ScalarType.Bool: dtype = SafetensorsDType.BOOL; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>The spelling of <paramref name="dtype"/> in a safetensors header (<c>"F32"</c>, <c>"BF16"</c>, <c>"BOOL"</c>, ...).</summary>
    /// <param name="dtype">The element type.</param>
    /// <returns>The header string.</returns>
    public static string ToHeaderString(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F64 => "F64",
        SafetensorsDType.F32 => "F32",
        SafetensorsDType.F16 => "F16",
        SafetensorsDType.BF16 => "BF16",
        SafetensorsDType.I64 => "I64",
        SafetensorsDType.I32 => "I32",
        SafetensorsDType.I16 => "I16",
        SafetensorsDType.I8 => "I8",
        SafetensorsDType.U8 => "U8",
        SafetensorsDType.BOOL => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };

    /// <summary>Parses a header dtype spelling; exact and case-sensitive, as in the Python library.</summary>
    /// <param name="text">The header string, e.g. <c>"F32"</c>.</param>
    /// <param name="dtype">The parsed dtype.</param>
    /// <returns><see langword="false"/> when the spelling is unknown or names a type this library does not support.</returns>
    public static bool TryParseHeaderString(string text, out SafetensorsDType dtype)
    {
        switch (text)
        {
            case "F64": dtype = SafetensorsDType.F64; return true;
            case "F32": dtype = SafetensorsDType.F32; return true;
            case "F16": dtype = SafetensorsDType.F16; return true;
            case "BF16": dtype = SafetensorsDType.BF16; return true;
            case "I64": dtype = SafetensorsDType.I64; return true;
            case "I32": dtype = SafetensorsDType.I32; return true;
            case "I16": dtype = SafetensorsDType.I16; return true;
            case "I8": dtype = SafetensorsDType.I8; return true;
            case "U8": dtype = SafetensorsDType.U8; return true;
            case "BOOL": dtype = SafetensorsDType.BOOL; return true;
            default: dtype = default; return false;
        }
    }
}
