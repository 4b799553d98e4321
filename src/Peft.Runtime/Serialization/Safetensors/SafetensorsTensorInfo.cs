namespace Peft.Serialization;

/// <summary>One tensor entry of a safetensors header.</summary>
/// <param name="Name">The tensor's name (the header key).</param>
/// <param name="DType">The element type.</param>
/// <param name="Shape">The dimensions, row-major; empty for a 0-d (scalar) tensor.</param>
/// <param name="Begin">Offset of the first byte, relative to the start of the data section.</param>
/// <param name="End">Offset one past the last byte, relative to the start of the data section.</param>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>The number of bytes the tensor occupies (<see cref="End"/> − <see cref="Begin"/>).</summary>
    public long ByteLength => End - Begin;

    /// <summary>The number of elements: the product of <see cref="Shape"/> (1 for a 0-d tensor).</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (var dim in Shape)
            {
                count = checked(count * dim);
            }
            return count;
        }
    }
}
