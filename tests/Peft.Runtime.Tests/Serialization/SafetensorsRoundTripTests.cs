using System.Buffers.Binary;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>Write then read: every dtype bit for bit, 0-d, empty and non-contiguous tensors, metadata, chunked copies.</summary>
public sealed class SafetensorsRoundTripTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor FromBytes(ScalarType dtype, long[] shape, byte[] bytes)
    {
        var t = empty(shape, dtype);
        t.bytes = bytes;
        return t;
    }

    [Fact]
    public void EveryDTypeRoundTripsBitForBit()
    {
        // Raw bit patterns include -0, infinities, a NaN with payload and subnormals: any float conversion would change them.
        var f64 = new byte[5 * 8];
        BinaryPrimitives.WriteDoubleLittleEndian(f64.AsSpan(0), 1.5);
        BinaryPrimitives.WriteDoubleLittleEndian(f64.AsSpan(8), -0.0);
        BinaryPrimitives.WriteDoubleLittleEndian(f64.AsSpan(16), double.MaxValue);
        BinaryPrimitives.WriteDoubleLittleEndian(f64.AsSpan(24), double.Epsilon);
        BinaryPrimitives.WriteUInt64LittleEndian(f64.AsSpan(32), 0x7FF8_0000_0000_1234UL);
        var f32 = new byte[4 * 4];
        BinaryPrimitives.WriteSingleLittleEndian(f32.AsSpan(0), 3.25f);
        BinaryPrimitives.WriteSingleLittleEndian(f32.AsSpan(4), float.NegativeInfinity);
        BinaryPrimitives.WriteSingleLittleEndian(f32.AsSpan(8), -1e-45f);
        BinaryPrimitives.WriteUInt32LittleEndian(f32.AsSpan(12), 0x7FC0_0ABCu);
        var f16 = SafetensorsBytes.FromUInt16(0x3C00 /* 1 */, 0xC000 /* -2 */, 0x7BFF /* 65504 */, 0x0001 /* subnormal */, 0x8000 /* -0 */, 0x7E01 /* NaN */);
        var bf16 = SafetensorsBytes.FromUInt16(0x3F80 /* 1 */, 0xC040 /* -3 */, 0x7F80 /* inf */, 0x0001 /* subnormal */, 0x7FC1 /* NaN */, 0x4049 /* 3.140625 */);
        var i64 = new byte[3 * 8];
        BinaryPrimitives.WriteInt64LittleEndian(i64.AsSpan(0), long.MinValue);
        BinaryPrimitives.WriteInt64LittleEndian(i64.AsSpan(8), -1);
        BinaryPrimitives.WriteInt64LittleEndian(i64.AsSpan(16), long.MaxValue);
        var i32 = new byte[4 * 4];
        BinaryPrimitives.WriteInt32LittleEndian(i32.AsSpan(0), int.MinValue);
        BinaryPrimitives.WriteInt32LittleEndian(i32.AsSpan(4), 0);
        BinaryPrimitives.WriteInt32LittleEndian(i32.AsSpan(8), 123456789);
        BinaryPrimitives.WriteInt32LittleEndian(i32.AsSpan(12), int.MaxValue);
        var i16 = SafetensorsBytes.FromUInt16(0x8000, 0xFFFF, 0x7FFF, 0x1234);
        var i8 = new byte[] { 0x80, 0xFF, 0x00, 0x7F };
        var u8 = new byte[] { 0, 1, 128, 255, 42, 7 };
        var b = new byte[] { 1, 0, 0, 1, 1 };

        var cases = new (string Name, ScalarType Type, SafetensorsDType DType, long[] Shape, byte[] Bytes)[]
        {
            ("f64", ScalarType.Float64, SafetensorsDType.F64, new long[] { 5 }, f64),
            ("f32", ScalarType.Float32, SafetensorsDType.F32, new long[] { 2, 2 }, f32),
            ("f16", ScalarType.Float16, SafetensorsDType.F16, new long[] { 2, 3 }, f16),
            ("bf16", ScalarType.BFloat16, SafetensorsDType.BF16, new long[] { 3, 1, 2 }, bf16),
            ("i64", ScalarType.Int64, SafetensorsDType.I64, new long[] { 3 }, i64),
            ("i32", ScalarType.Int32, SafetensorsDType.I32, new long[] { 4, 1 }, i32),
            ("i16", ScalarType.Int16, SafetensorsDType.I16, new long[] { 2, 2 }, i16),
            ("i8", ScalarType.Int8, SafetensorsDType.I8, new long[] { 4 }, i8),
            ("u8", ScalarType.Byte, SafetensorsDType.U8, new long[] { 2, 3 }, u8),
            ("bool", ScalarType.Bool, SafetensorsDType.BOOL, new long[] { 5 }, b),
        };

        var tensors = cases.Select(c => new KeyValuePair<string, Tensor>(c.Name, FromBytes(c.Type, c.Shape, c.Bytes))).ToList();
        var path = _dir.File("all.safetensors");
        SafetensorsFile.Write(path, tensors);

        using var reader = SafetensorsFile.Open(path);
        Assert.Equal(cases.Select(c => c.Name), reader.Tensors.Select(t => t.Name));
        long expectedBegin = 0;
        foreach (var c in cases)
        {
            var info = reader.GetInfo(c.Name);
            Assert.Equal(c.DType, info.DType);
            Assert.Equal(c.Shape, info.Shape);
            Assert.Equal(expectedBegin, info.Begin);
            Assert.Equal(expectedBegin + c.Bytes.Length, info.End);
            expectedBegin = info.End;

            using var read = reader.ReadTensor(c.Name);
            Assert.Equal(c.Type, read.dtype);
            Assert.Equal(c.Shape, read.shape);
            Assert.Equal(DeviceType.CPU, read.device_type);
            Assert.Equal(c.Bytes, SafetensorsBytes.Of(read));
        }

        // A few decoded values, so the dtype mapping is checked and not only the bytes.
        using (var bf = reader.ReadTensor("bf16"))
        using (var bfAsFloat = bf.to_type(ScalarType.Float32))
        {
            Assert.Equal(new[] { 1f, -3f, float.PositiveInfinity }, bfAsFloat.data<float>().ToArray().Take(3));
            Assert.Equal(3.140625f, bfAsFloat.data<float>().ToArray()[5]);
        }
        using (var h = reader.ReadTensor("f16"))
        using (var hAsFloat = h.to_type(ScalarType.Float32))
        {
            Assert.Equal(new[] { 1f, -2f, 65504f }, hAsFloat.data<float>().ToArray().Take(3));
        }
        using (var bools = reader.ReadTensor("bool"))
        {
            Assert.Equal(new[] { true, false, false, true, true }, bools.data<bool>().ToArray());
        }
        using (var longs = reader.ReadTensor("i64"))
        {
            Assert.Equal(new[] { long.MinValue, -1L, long.MaxValue }, longs.data<long>().ToArray());
        }

        foreach (var (_, t) in tensors)
        {
            t.Dispose();
        }
    }

    [Fact]
    public void ZeroDimensionalAndEmptyTensorsRoundTrip()
    {
        using var scalar = tensor(2.75f);
        using var emptyMatrix = zeros(0, 3, dtype: ScalarType.Float32);
        using var emptyVector = zeros(new long[] { 0 }, dtype: ScalarType.Int64);
        using var after = tensor(new int[] { 7, 8 });
        Assert.Empty(scalar.shape);

        var path = _dir.File("shapes.safetensors");
        SafetensorsFile.Write(path, new Dictionary<string, Tensor>
        {
            ["scalar"] = scalar,
            ["empty_matrix"] = emptyMatrix,
            ["empty_vector"] = emptyVector,
            ["after"] = after,
        });

        using var reader = SafetensorsFile.Open(path);
        var s = reader.GetInfo("scalar");
        Assert.Empty(s.Shape);
        Assert.Equal((0L, 4L), (s.Begin, s.End));
        Assert.Equal(1, s.ElementCount);
        var e = reader.GetInfo("empty_matrix");
        Assert.Equal(new long[] { 0, 3 }, e.Shape);
        Assert.Equal((4L, 4L), (e.Begin, e.End));
        Assert.Equal((4L, 12L), (reader.GetInfo("after").Begin, reader.GetInfo("after").End));

        using var readScalar = reader.ReadTensor("scalar");
        Assert.Equal(0, readScalar.ndim);
        Assert.Equal(2.75f, readScalar.item<float>());
        using var readEmpty = reader.ReadTensor("empty_matrix");
        Assert.Equal(new long[] { 0, 3 }, readEmpty.shape);
        Assert.Equal(ScalarType.Float32, readEmpty.dtype);
        using var readEmptyVector = reader.ReadTensor("empty_vector");
        Assert.Equal(new long[] { 0 }, readEmptyVector.shape);
        Assert.Equal(ScalarType.Int64, readEmptyVector.dtype);
        using var readAfter = reader.ReadTensor("after");
        Assert.Equal(new[] { 7, 8 }, readAfter.data<int>().ToArray());
    }

    [Fact]
    public void NonContiguousInputIsWrittenRowMajorAndLeftUntouched()
    {
        using var source = arange(12, dtype: ScalarType.Int32).reshape(3, 4);
        using var transposed = source.t();            // [4, 3], strides (1, 4)
        using var strided = source[.., TensorIndex.Slice(null, null, 2)];   // [3, 2], every other column
        Assert.False(transposed.is_contiguous());
        Assert.False(strided.is_contiguous());

        var path = _dir.File("views.safetensors");
        SafetensorsFile.Write(path, new[]
        {
            KeyValuePair.Create("t", transposed),
            KeyValuePair.Create("s", strided),
        });

        using var reader = SafetensorsFile.Open(path);
        using var t = reader.ReadTensor("t");
        Assert.Equal(new long[] { 4, 3 }, t.shape);
        Assert.Equal(new[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }, t.data<int>().ToArray());
        using var s = reader.ReadTensor("s");
        Assert.Equal(new long[] { 3, 2 }, s.shape);
        Assert.Equal(new[] { 0, 2, 4, 6, 8, 10 }, s.data<int>().ToArray());

        // The caller's tensors are still alive, still views, with their values.
        Assert.False(transposed.IsInvalid);
        Assert.False(transposed.is_contiguous());
        Assert.Equal(new long[] { 4, 3 }, transposed.shape);
        Assert.Equal(9, transposed[1, 2].item<int>());
    }

    [Fact]
    public void MetadataRoundTripsAndIsEmptyWhenAbsent()
    {
        using var w = ones(2);
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["note"] = "quotes \" backslash \\ newline \n tab \t",
            ["unicode"] = "héllo ✓ 日本 <tag> a+b & 'x'",
            ["empty"] = "",
        };
        var withMeta = _dir.File("meta.safetensors");
        SafetensorsFile.Write(withMeta, new[] { KeyValuePair.Create("w", w) }, metadata);
        using (var reader = SafetensorsFile.Open(withMeta))
        {
            Assert.Equal(metadata.OrderBy(p => p.Key), reader.Metadata.OrderBy(p => p.Key));
        }

        // Non-ASCII and HTML-sensitive characters are stored as UTF-8, as the Python library writes them.
        var headerText = System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(withMeta));
        Assert.Contains("héllo ✓ 日本 <tag> a+b & 'x'", headerText);

        var without = _dir.File("nometa.safetensors");
        SafetensorsFile.Write(without, new[] { KeyValuePair.Create("w", w) });
        Assert.DoesNotContain("__metadata__", System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(without)));
        using (var reader = SafetensorsFile.Open(without))
        {
            Assert.Empty(reader.Metadata);
            Assert.True(reader.Contains("w"));
        }
    }

    [Fact]
    public void TinyChunksCopyIdenticalData()
    {
        using var gen = new Generator(1234);
        using var big = randn(new long[] { 37, 29 }, dtype: ScalarType.Float64, generator: gen);   // 1073 elements, 8584 bytes
        using var floats = randn(new long[] { 301 }, generator: gen);
        using var halves = floats.to_type(ScalarType.BFloat16);
        var items = new[] { KeyValuePair.Create("big", big), KeyValuePair.Create("halves", halves) };

        var chunked = _dir.File("chunked.safetensors");
        var whole = _dir.File("whole.safetensors");
        // 20 bytes rounds down to 2 F64 elements and 10 BF16 elements per chunk.
        SafetensorsFile.Write(chunked, items, null, chunkBytes: 20, beforeTensorData: null);
        SafetensorsFile.Write(whole, items);
        Assert.Equal(File.ReadAllBytes(whole), File.ReadAllBytes(chunked));

        using var reader = SafetensorsFile.Open(chunked);
        using var readBig = reader.ReadTensor("big", chunkBytes: 20, out long bigChunks);
        Assert.Equal(537, bigChunks);   // ceil(1073 / 2)
        Assert.Equal(SafetensorsBytes.Of(big), SafetensorsBytes.Of(readBig));
        Assert.True(readBig.allclose(big, rtol: 0, atol: 0));

        // A chunk smaller than one element still copies one element at a time.
        using var readOneByOne = reader.ReadTensor("big", chunkBytes: 3, out long oneByOneChunks);
        Assert.Equal(1073, oneByOneChunks);
        Assert.Equal(SafetensorsBytes.Of(big), SafetensorsBytes.Of(readOneByOne));

        using var readHalves = reader.ReadTensor("halves", chunkBytes: 20, out long halfChunks);
        Assert.Equal(31, halfChunks);   // ceil(301 / 10)
        Assert.Equal(SafetensorsBytes.Of(halves), SafetensorsBytes.Of(readHalves));

        using var readDefault = reader.ReadTensor("big");
        Assert.Equal(SafetensorsBytes.Of(big), SafetensorsBytes.Of(readDefault));
    }

    [Fact]
    public void ReaderLookupsAndDisposal()
    {
        using var a = tensor(new float[] { 1, 2 });
        var path = _dir.File("lookup.safetensors");
        SafetensorsFile.Write(path, new[] { KeyValuePair.Create("layer.0.weight", a) });

        var reader = SafetensorsFile.Open(path);
        Assert.Equal(Path.GetFullPath(path), reader.Path);
        Assert.True(reader.Contains("layer.0.weight"));
        Assert.False(reader.Contains("layer.0.bias"));
        var missing = Assert.Throws<KeyNotFoundException>(() => reader.GetInfo("layer.0.bias"));
        Assert.Contains("layer.0.bias", missing.Message);
        Assert.Contains(path, missing.Message);
        Assert.Throws<KeyNotFoundException>(() => reader.ReadTensor("layer.0.bias"));

        // Mutating the returned shape array does not change what is read.
        reader.GetInfo("layer.0.weight").Shape[0] = 99;
        using (var read = reader.ReadTensor("layer.0.weight"))
        {
            Assert.Equal(new long[] { 2 }, read.shape);
        }

        reader.Dispose();
        Assert.Throws<ObjectDisposedException>(() => reader.ReadTensor("layer.0.weight"));
    }
}
