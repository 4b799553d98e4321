using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>Receives one chunk of a tensor's bytes and the chunk's byte offset within the tensor.</summary>
internal delegate void TensorChunkAction(Span<byte> chunk, long byteOffset);

/// <summary>
/// Walks a tensor's native memory in bounded chunks, so no managed array of a whole tensor is ever allocated and
/// tensors beyond 2 GB work: each chunk is a 1-D view narrowed out of the flattened tensor, exposed as a span.
/// </summary>
internal static class TensorChunks
{
    /// <summary>Default chunk size: 16 MiB.</summary>
    internal const int DefaultChunkBytes = 16 << 20;

    /// <summary>
    /// Calls <paramref name="action"/> on consecutive chunks of at most <paramref name="chunkBytes"/> bytes (rounded down to whole
    /// elements, at least one element) covering the contiguous CPU tensor <paramref name="tensor"/> in row-major order.
    /// Writes to a chunk land in the tensor's memory.
    /// </summary>
    /// <returns>The number of chunks visited (0 for an empty tensor).</returns>
    internal static long ForEach(Tensor tensor, int chunkBytes, TensorChunkAction action)
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
        {
            throw new ArgumentException("Chunked access needs a contiguous CPU tensor.", nameof(tensor));
        }
        long count = tensor.numel();
        if (count == 0)
        {
            return 0;
        }
        long elementSize = tensor.element_size();
        long perChunk = Math.Max(1, Math.Max(1, chunkBytes) / elementSize);
        using var flat = tensor.view(-1);
        long chunks = 0;
        for (long start = 0; start < count; start += perChunk)
        {
            long length = Math.Min(perChunk, count - start);
            using var slice = flat.narrow(0, start, length);
            action(slice.bytes, start * elementSize);
            chunks++;
        }
        return chunks;
    }

    /// <summary>
    /// Calls <paramref name="action"/> on consecutive read-only chunks of <paramref name="tensor"/>'s row-major bytes, for a
    /// tensor on any device and with any strides. A non-contiguous tensor is first made contiguous on its own device; a tensor
    /// on an accelerator is brought to the CPU one chunk at a time, so host memory stays bounded by the chunk size.
    /// The caller's tensor is neither modified nor disposed.
    /// </summary>
    /// <returns>The number of bytes visited.</returns>
    internal static long ForEachReadOnly(Tensor tensor, int chunkBytes, TensorChunkAction action)
    {
        using var detached = tensor.detach();
        var contiguous = detached.is_contiguous() ? detached : detached.contiguous();
        try
        {
            if (contiguous.device_type == DeviceType.CPU)
            {
                long total = 0;
                ForEach(contiguous, chunkBytes, (chunk, offset) =>
                {
                    action(chunk, offset);
                    total += chunk.Length;
                });
                return total;
            }
            return ForEachFromDevice(contiguous, chunkBytes, action);
        }
        finally
        {
            if (!ReferenceEquals(contiguous, detached))
            {
                contiguous.Dispose();
            }
        }
    }

    private static long ForEachFromDevice(Tensor contiguous, int chunkBytes, TensorChunkAction action)
    {
        long count = contiguous.numel();
        if (count == 0)
        {
            return 0;
        }
        long elementSize = contiguous.element_size();
        long perChunk = Math.Max(1, Math.Max(1, chunkBytes) / elementSize);
        using var flat = contiguous.view(-1);
        long total = 0;
        for (long start = 0; start < count; start += perChunk)
        {
            long length = Math.Min(perChunk, count - start);
            using var slice = flat.narrow(0, start, length);
            using var host = slice.cpu();
            var bytes = host.bytes;
            action(bytes, start * elementSize);
            total += bytes.Length;
        }
        return total;
    }
}
