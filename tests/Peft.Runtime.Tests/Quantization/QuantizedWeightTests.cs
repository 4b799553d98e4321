using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Quantization;

/// <summary>QLoRA's storage: the NF4 codebook, rounding and error bounds, double quantization, int8 rows, sizes.</summary>
public class QuantizedWeightTests
{
    [Fact]
    public void Nf4CodesAreTheNormalQuantilesOfQLoRA()
    {
        // create_normal_map(0.9677083, use_extra_value=True): Φ⁻¹ of 8 points from 0.9677083 down to 0.5 (exclusive) and of 7
        // points on the negative side, a zero, scaled so the largest is 1. Φ⁻¹(p) = √2 · erfinv(2p − 1).
        static double[] Quantiles(int count) => Enumerable.Range(0, count - 1)
            .Select(i => 0.9677083 + (0.5 - 0.9677083) * i / (count - 1)).ToArray();
        using var pos = torch.tensor(Quantiles(9), dtype: ScalarType.Float64).mul(2).sub(1).erfinv().mul(Math.Sqrt(2));
        using var neg = torch.tensor(Quantiles(8), dtype: ScalarType.Float64).mul(2).sub(1).erfinv().mul(-Math.Sqrt(2));
        using var all = torch.cat(new[] { pos, torch.zeros(1, dtype: ScalarType.Float64), neg });
        using var sorted = all.sort().Values;
        using var expected = sorted / sorted.max();
        using var codes = torch.tensor(Nf4Codebook.Codes.Select(c => (double)c).ToArray(), dtype: ScalarType.Float64);
        TensorAssert.Close(expected, codes, 2e-7);
        Assert.Equal((1 - 0.6961928009986877) / 2, Nf4Codebook.MaxRoundingError, 6); // the widest gap: -1 to -0.6962
    }

    [Fact]
    public void Nf4RoundsToTheNearestCode()
    {
        // Midpoints: between 0 and 0.0796 is 0.0398; 0.05 → code 8 (0.0796), 0.03 → code 7 (0); -0.95 → code 0 (-1); 0.8 → 14 (0.7230).
        using var values = torch.tensor(new float[] { 0.05f, 0.03f, -0.95f, 0.8f, 0.9f, 1f });
        using var index = Nf4Codebook.Nearest(values);
        Assert.Equal(new byte[] { 8, 7, 0, 14, 15, 15 }, index.data<byte>().ToArray());
    }

    [Fact]
    public void Nf4StoresCodesTimesTheBlockAbsmaxExactly()
    {
        // One block of 64 = [out 4, in 16]: the values 2·code (codes 0..15, four times), absmax 2. Double quantization of one
        // absmax: the mean is 2, the centered value 0, so the absmax comes back exactly and so does every weight.
        var codes = Nf4Codebook.Codes.ToArray();
        var values = Enumerable.Range(0, 64).Select(i => 2f * codes[i % 16]).ToArray();
        using var w = torch.tensor(values).reshape(4, 16);
        var q = QuantizedWeight.Quantize(w, QuantizationFormat.NF4);
        using var back = q.Dequantize();
        TensorAssert.Close(w, back, 1e-6);

        // Packed two per byte, the first in the high nibble: codes 0, 1 → 0x01; 14, 15 → 0xEF.
        var packed = q.Buffers["weight_nf4_codes"].data<byte>().ToArray();
        Assert.Equal(32, packed.Length);
        Assert.Equal(0x01, packed[0]);
        Assert.Equal(0xEF, packed[7]);
    }

    [Theory]
    [InlineData(64, 64)]
    [InlineData(37, 53)] // 1961 weights: a padded last block
    [InlineData(300, 256)] // 1200 blocks: several absmax blocks of 256, the last one padded
    public void Nf4ErrorIsWithinHalfTheWidestCodeGapOfEachBlocksAbsmax(int rows, int cols)
    {
        torch.manual_seed(5);
        using var w = torch.randn(rows, cols) * 0.02;
        var q = QuantizedWeight.Quantize(w, QuantizationFormat.NF4);
        using var back = q.Dequantize();
        Assert.Equal(new long[] { rows, cols }, back.shape);

        // Per element: |w − ŵ| ≤ absmax·maxGap/2 (the code) + |absmax − âbsmax| (the double-quantized scale, |code| ≤ 1).
        long n = (long)rows * cols, blocks = (n + 63) / 64;
        using var flat = torch.cat(new[] { w.flatten(), torch.zeros(blocks * 64 - n) }).view(blocks, 64);
        using var absmax = flat.abs().amax(new long[] { 1 });
        using var centered = absmax - absmax.mean();
        long absmaxBlocks = (blocks + 255) / 256;
        using var padded = torch.cat(new[] { centered, torch.zeros(absmaxBlocks * 256 - blocks) }).view(absmaxBlocks, 256);
        using var scaleBound = padded.abs().amax(new long[] { 1 }) / 254; // half a step of the int8 absmax
        using var absmaxError = scaleBound.repeat_interleave(256)[..(int)blocks];
        using var bound = (absmax * Nf4Codebook.MaxRoundingError + absmaxError + 1e-7).unsqueeze(1).expand(blocks, 64).flatten()[..(int)n].view(rows, cols);
        using var error = (w - back).abs();
        Assert.True((error <= bound).all().item<bool>(), $"max excess {(error - bound).max().item<float>()}");

        // And it is a real approximation: relative RMS error of Gaussian weights is a few percent, not zero and not 100%.
        double rel = ((w - back).square().mean().sqrt() / w.square().mean().sqrt()).item<float>();
        Assert.InRange(rel, 0.02, 0.15);
        Assert.Equal(QuantizedWeight.StorageBytesFor(QuantizationFormat.NF4, rows, cols), q.StorageBytes);
    }

    [Fact]
    public void Int8RowsAreWithinHalfAStepOfTheirScale()
    {
        // Hand example: row [1.27, -0.5, 0] has absmax 1.27, scale 0.01: codes [127, -50, 0], exact.
        using var hand = torch.tensor(new float[] { 1.27f, -0.5f, 0f, 2.54f, 1f, -2.54f }).reshape(2, 3);
        var q = QuantizedWeight.Quantize(hand, QuantizationFormat.Int8);
        Assert.Equal(new sbyte[] { 127, -50, 0, 127, 50, -127 }, q.Buffers["weight_int8"].data<sbyte>().ToArray());
        using var back = q.Dequantize();
        TensorAssert.Close(hand, back, 1e-6);

        torch.manual_seed(6);
        using var w = torch.randn(33, 70);
        var r = QuantizedWeight.Quantize(w, QuantizationFormat.Int8);
        using var approx = r.Dequantize();
        using var halfStep = (w.abs().amax(new long[] { 1 }) / 254 + 1e-7).unsqueeze(1);
        Assert.True(((w - approx).abs() <= halfStep).all().item<bool>());
        Assert.Equal(33 * 70 + 4 * 33, r.StorageBytes);
    }

    [Theory]
    [InlineData(QuantizationFormat.NF4, 1024, 1024, 540_932, 0.1290)]
    [InlineData(QuantizationFormat.NF4, 4096, 11008, 23_259_908, 0.1290)]
    [InlineData(QuantizationFormat.Int8, 1024, 1024, 1_052_672, 0.2510)]
    public void StorageAgainstFloat32(QuantizationFormat format, long rows, long cols, long bytes, double ratio)
    {
        // NF4 1024²: codes 524,288 + int8 absmax 16,384 + 64 scales · 4 + offset 4 = 540,932 bytes (0.129 of 4 MiB).
        Assert.Equal(bytes, QuantizedWeight.StorageBytesFor(format, rows, cols));
        Assert.Equal(ratio, (double)bytes / (4 * rows * cols), 4);
    }

    [Fact]
    public void NonFiniteWeightsAreRefused()
    {
        using var w = torch.tensor(new float[] { 1, float.NaN, 0, 2 }).reshape(2, 2);
        var e = Assert.Throws<ArgumentException>(() => QuantizedWeight.Quantize(w, QuantizationFormat.NF4));
        Assert.Contains("NaN", e.Message);
    }
}
