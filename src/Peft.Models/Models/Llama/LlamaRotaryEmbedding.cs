using static TorchSharp.torch;

namespace Peft.Models.Llama;

/// <summary>
/// Rotary position embeddings as transformers computes them for Llama: <c>inv_freq[i] = 1 / theta^(2i/d)</c>,
/// angles <c>pos * inv_freq</c> repeated twice (<c>cat(freqs, freqs)</c>), and the "rotate_half" convention
/// <c>x * cos + rotate_half(x) * sin</c> with <c>rotate_half(x) = cat(-x[d/2:], x[:d/2])</c>.
/// Nothing is stored in the model (transformers' <c>inv_freq</c> buffer is non-persistent).
/// </summary>
public static class LlamaRotaryEmbedding
{
    /// <summary>Cosine and sine tables [positions, headDim] for positions <c>start .. start+count-1</c>.</summary>
    /// <param name="start">First position.</param>
    /// <param name="count">Number of positions.</param>
    /// <param name="headDim">The rotated width (even).</param>
    /// <param name="theta">The rotary base (<c>rope_theta</c>).</param>
    /// <param name="dtype">Dtype of the returned tables.</param>
    /// <param name="device">Device of the returned tables.</param>
    public static (Tensor Cos, Tensor Sin) Tables(long start, long count, int headDim, double theta, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        // As transformers: the exponents in float32, the angles in float32.
        var exponents = arange(0, headDim, 2, dtype: ScalarType.Int64, device: device).to_type(ScalarType.Float32) / headDim;
        var invFreq = 1.0f / pow(tensor((float)theta, device: device), exponents);
        var positions = arange(start, start + count, dtype: ScalarType.Int64, device: device).to_type(ScalarType.Float32);
        var freqs = outer(positions, invFreq);
        var emb = cat(new[] { freqs, freqs }, -1);
        var cos = emb.cos().to_type(dtype);
        var sin = emb.sin().to_type(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary><c>cat(-x[..., d/2:], x[..., :d/2])</c>.</summary>
    /// <param name="x">A tensor whose last dimension is the head width.</param>
    public static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        using var scope = NewDisposeScope();
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return cat(new[] { -x2, x1 }, -1).MoveToOuterDisposeScope();
    }

    /// <summary>Rotates <paramref name="x"/> [batch, heads, time, headDim] by the tables [time, headDim].</summary>
    /// <param name="x">Queries or keys.</param>
    /// <param name="cos">Cosine table.</param>
    /// <param name="sin">Sine table.</param>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        return (x * cos + RotateHalf(x) * sin).MoveToOuterDisposeScope();
    }
}
