using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// The 4-bit NormalFloat codebook of QLoRA (Dettmers et al.; bitsandbytes' <c>create_normal_map(0.9677083, use_extra_value=True)</c>):
/// 8 positive and 7 negative quantiles of the standard normal, an exact zero, scaled so that the extremes are ±1.
/// </summary>
public static class Nf4Codebook
{
    /// <summary>The sixteen codes, ascending (the values bitsandbytes ships).</summary>
    public static IReadOnlyList<float> Codes { get; } = new[]
    {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    };

    /// <summary>The largest distance from a value in [-1, 1] to its nearest code (half the widest gap, between -1 and -0.6962: 0.1519).</summary>
    public static double MaxRoundingError { get; } = Codes.Zip(Codes.Skip(1), (a, b) => (b - a) / 2.0).Max();

    /// <summary>The codes as a float32 tensor on <paramref name="device"/>.</summary>
    /// <param name="device">The device.</param>
    /// <returns>A new tensor <c>[16]</c>.</returns>
    public static Tensor Tensor(Device device) => tensor(Codes.ToArray(), device: device);

    /// <summary>The index of the nearest code for each value of <paramref name="normalized"/> (values in [-1, 1]): the
    /// count of midpoints between consecutive codes below the value.</summary>
    /// <param name="normalized">Values divided by their block's absmax.</param>
    /// <returns>A new uint8 tensor of the same shape.</returns>
    public static Tensor Nearest(Tensor normalized)
    {
        var midpoints = Codes.Zip(Codes.Skip(1), (a, b) => (a + b) / 2f).ToArray();
        using var boundaries = tensor(midpoints, device: normalized.device);
        using var index = bucketize(normalized, boundaries);
        return index.to(ScalarType.Byte);
    }
}
