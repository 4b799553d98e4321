using System.Buffers.Binary;
using System.Text;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>The exact bytes we write, and reading files built by hand the way other writers may lay them out.</summary>
public sealed class SafetensorsFormatTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void WrittenBytesAreExactlyWhatTheSpecPrescribes()
    {
        using var a = tensor(new float[] { 1f, -2f });
        using var b = tensor(new byte[] { 1, 2, 3 });
        var path = _dir.File("tiny.safetensors");
        SafetensorsFile.Write(path,
            new[] { KeyValuePair.Create("a", a), KeyValuePair.Create("b", b) },
            new Dictionary<string, string> { ["format"] = "pt" });

        const string json = "{\"__metadata__\":{\"format\":\"pt\"},"
            + "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}";
        var jsonBytes = Encoding.UTF8.GetBytes(json);
        Assert.Equal(138, jsonBytes.Length);
        var expected = new List<byte>();
        expected.AddRange(new byte[] { 144, 0, 0, 0, 0, 0, 0, 0 });   // N = 138 + 6 spaces, u64 little-endian
        expected.AddRange(jsonBytes);
        expected.AddRange(Encoding.ASCII.GetBytes("      "));
        expected.AddRange(new byte[] { 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0 });   // 1.0f, -2.0f
        expected.AddRange(new byte[] { 1, 2, 3 });
        Assert.Equal(expected.ToArray(), File.ReadAllBytes(path));
    }

    [Fact]
    public void HeaderIsPaddedWithSpacesToEightBytes()
    {
        using var x = tensor(new short[] { 0x0102, -1 });
        var path = _dir.File("pad.safetensors");
        SafetensorsFile.Write(path, new[] { KeyValuePair.Create("x", x) });

        const string json = "{\"x\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
        var jsonBytes = Encoding.UTF8.GetBytes(json);
        Assert.Equal(54, jsonBytes.Length);
        var expected = new byte[8 + 56 + 4];
        expected[0] = 56;                                   // N = 54 rounded up to 56
        jsonBytes.CopyTo(expected, 8);
        expected[62] = expected[63] = (byte)' ';
        expected[64] = 0x02; expected[65] = 0x01; expected[66] = 0xFF; expected[67] = 0xFF;
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Fact]
    public void ReadsHandBuiltFileWithPaddingAndTensorsOutOfOffsetOrder()
    {
        // Header order is "second", "empty", "first", but in the data "first" comes first; extra unknown keys are ignored.
        const string json = "{ \"second\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [4, 12], \"extra\": {\"any\": [1]}},"
            + " \"empty\": {\"shape\": [0, 5], \"dtype\": \"BF16\", \"data_offsets\": [12, 12]},"
            + " \"first\": {\"data_offsets\": [0, 4], \"dtype\": \"I16\", \"shape\": [2]},"
            + " \"__metadata__\": {\"source\": \"hand\"} }";
        var data = new byte[12];
        BinaryPrimitives.WriteInt16LittleEndian(data.AsSpan(0), -7);
        BinaryPrimitives.WriteInt16LittleEndian(data.AsSpan(2), 300);
        BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(4), 123456);
        BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(8), -99);
        var path = _dir.WriteRaw("hand.safetensors", SafetensorsBytes.Build(json, data, paddingSpaces: 13));

        using var reader = SafetensorsFile.Open(path);
        Assert.Equal(new[] { "second", "empty", "first" }, reader.Tensors.Select(t => t.Name));
        Assert.Equal("hand", reader.Metadata["source"]);
        var firstInfo = reader.GetInfo("first");
        Assert.Equal(new long[] { 2 }, firstInfo.Shape);
        Assert.Equal(new SafetensorsTensorInfo("first", SafetensorsDType.I16, firstInfo.Shape, 0, 4), firstInfo);
        Assert.Equal((4L, 12L), (reader.GetInfo("second").Begin, reader.GetInfo("second").End));
        using var first = reader.ReadTensor("first");
        Assert.Equal(new short[] { -7, 300 }, first.data<short>().ToArray());
        using var second = reader.ReadTensor("second");
        Assert.Equal(new[] { 123456, -99 }, second.data<int>().ToArray());
        using var emptyT = reader.ReadTensor("empty");
        Assert.Equal(new long[] { 0, 5 }, emptyT.shape);
        Assert.Equal(ScalarType.BFloat16, emptyT.dtype);
    }

    [Fact]
    public void ReadsFileWithNoTensors()
    {
        var path = _dir.WriteRaw("none.safetensors", SafetensorsBytes.Build("{}", Array.Empty<byte>(), paddingSpaces: 6));
        using var reader = SafetensorsFile.Open(path);
        Assert.Empty(reader.Tensors);
        Assert.Empty(reader.Metadata);

        var written = _dir.File("written-none.safetensors");
        SafetensorsFile.Write(written, Array.Empty<KeyValuePair<string, Tensor>>());
        Assert.Equal(new byte[] { 8, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'}', 32, 32, 32, 32, 32, 32 }, File.ReadAllBytes(written));
    }
}
