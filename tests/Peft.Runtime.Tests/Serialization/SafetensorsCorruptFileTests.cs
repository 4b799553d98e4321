using System.Text;
using Peft.Serialization;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>Every malformed file is rejected by <see cref="SafetensorsFile.Open"/> with a message naming the file and the problem.</summary>
public sealed class SafetensorsCorruptFileTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private void AssertRejected(byte[] bytes, string phrase)
    {
        var path = _dir.WriteRaw("bad.safetensors", bytes);
        var ex = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, ex.Message);
        Assert.Contains(phrase, ex.Message);
        Assert.Equal(path, ex.FilePath);
        Assert.Contains(phrase, ex.Problem);
    }

    private void AssertRejected(string json, int dataLength, string phrase)
        => AssertRejected(SafetensorsBytes.Build(json, new byte[dataLength]), phrase);

    private static string Entry(string name, string dtype, string shape, string offsets)
        => $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":{offsets}}}";

    [Fact]
    public void FileShorterThanEightBytes()
    {
        AssertRejected(new byte[] { 1, 0, 0, 0, 0 }, "is 5 bytes long, shorter than the 8-byte header length prefix");
        AssertRejected(Array.Empty<byte>(), "is 0 bytes long");
    }

    [Fact]
    public void HeaderLengthLargerThanTheFile()
        => AssertRejected(SafetensorsBytes.WithLength(1000, Encoding.UTF8.GetBytes("{}      ")), "header length 1000 exceeds the file size: only 8 bytes follow");

    [Fact]
    public void HeaderLengthAbsurd()
    {
        AssertRejected(SafetensorsBytes.WithLength(200_000_000, Encoding.UTF8.GetBytes("{}")), "header length 200000000 exceeds the maximum of 100000000 bytes");
        AssertRejected(SafetensorsBytes.WithLength(ulong.MaxValue, Encoding.UTF8.GetBytes("{}")), "exceeds the maximum");
    }

    [Fact]
    public void HeaderIsNotValidJson()
    {
        AssertRejected("{\"a\": {\"dtype\": \"F32\",", 0, "header is not valid JSON");
        AssertRejected(SafetensorsBytes.WithLength(0, Array.Empty<byte>()), "header is not valid JSON");
        AssertRejected(SafetensorsBytes.WithLength(4, new byte[] { (byte)'{', 0xFF, 0xFE, (byte)'}' }), "header is not valid UTF-8");   // not UTF-8
        AssertRejected("{\"a\": 1,}", 0, "header is not valid JSON");   // trailing comma
    }

    [Fact]
    public void HeaderIsNotAnObject()
    {
        AssertRejected("[1, 2]", 0, "header is not a JSON object (it is an array)");
        AssertRejected("\"F32\"", 0, "header is not a JSON object (it is a string)");
        AssertRejected("{\"w\": [1]}", 0, "tensor 'w' must be an object");
    }

    [Fact]
    public void UnknownDType()
    {
        AssertRejected("{" + Entry("w", "F8_E4M3", "[2]", "[0,2]") + "}", 2, "tensor 'w' has an unknown or unsupported dtype 'F8_E4M3'");
        AssertRejected("{" + Entry("w", "f32", "[1]", "[0,4]") + "}", 4, "unknown or unsupported dtype 'f32'");
        AssertRejected("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "has a dtype that is a number, not a string");
    }

    [Fact]
    public void NegativeOrNonIntegerShape()
    {
        AssertRejected("{" + Entry("w", "F32", "[2,-1]", "[0,0]") + "}", 0, "tensor 'w' has a negative shape[1] = -1");
        AssertRejected("{" + Entry("w", "F32", "[1.5]", "[0,4]") + "}", 4, "tensor 'w' has shape[0] = 1.5, which is not an integer");
        AssertRejected("{" + Entry("w", "F32", "[\"2\"]", "[0,8]") + "}", 8, "which is not an integer");
        AssertRejected("{" + Entry("w", "F32", "[99999999999999999999]", "[0,8]") + "}", 8, "which is not an integer");
        AssertRejected("{" + Entry("w", "F32", "7", "[0,28]") + "}", 28, "has a shape that is a number, not an array");
        AssertRejected("{" + Entry("w", "F32", "[4294967296,4294967296]", "[0,8]") + "}", 8, "overflows a 64-bit integer");
    }

    [Fact]
    public void ReversedOffsets()
        => AssertRejected("{" + Entry("w", "U8", "[4]", "[4,0]") + "}", 4, "tensor 'w' has reversed data_offsets [4, 0]");

    [Fact]
    public void MalformedOffsets()
    {
        AssertRejected("{" + Entry("w", "U8", "[4]", "[0]") + "}", 4, "must have data_offsets as an array of exactly two integers");
        AssertRejected("{" + Entry("w", "U8", "[4]", "[0,4,8]") + "}", 4, "exactly two integers");
        AssertRejected("{" + Entry("w", "U8", "[4]", "[-4,0]") + "}", 4, "has a negative data_offsets[0] = -4");
        AssertRejected("{\"w\":{\"dtype\":\"U8\",\"shape\":[4]}}", 4, "tensor 'w' is missing the required key 'data_offsets'");
        AssertRejected("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,4]}}", 4, "tensor 'w' is missing the required key 'shape'");
    }

    [Fact]
    public void OffsetsOutsideTheDataSection()
        => AssertRejected("{" + Entry("a", "U8", "[4]", "[0,4]") + "," + Entry("b", "U8", "[4]", "[4,8]") + "}", 6,
            "tensor 'b' has data_offsets [4, 8] outside the data section of 6 bytes");

    [Fact]
    public void OverlappingTensors()
        => AssertRejected("{" + Entry("a", "F32", "[2]", "[0,8]") + "," + Entry("b", "F32", "[2]", "[4,12]") + "}", 12,
            "tensor 'b' [4, 12] overlaps tensor 'a' [0, 8]");

    [Fact]
    public void SameRegionTwice()
        => AssertRejected("{" + Entry("a", "F32", "[2]", "[0,8]") + "," + Entry("b", "I64", "[1]", "[0,8]") + "}", 8, "overlaps");

    [Fact]
    public void HolesInTheDataSection()
    {
        AssertRejected("{" + Entry("a", "U8", "[4]", "[0,4]") + "," + Entry("b", "U8", "[4]", "[8,12]") + "}", 12,
            "the data section has a hole: bytes [4, 8) belong to no tensor");
        AssertRejected("{" + Entry("a", "U8", "[4]", "[4,8]") + "}", 8, "has a hole: bytes [0, 4) belong to no tensor");
        AssertRejected("{" + Entry("a", "U8", "[4]", "[0,4]") + "}", 7, "has a hole: bytes [4, 7) at its end belong to no tensor");
    }

    [Fact]
    public void ByteLengthNotMatchingShapeAndDType()
    {
        AssertRejected("{" + Entry("w", "F32", "[3]", "[0,8]") + "}", 8,
            "tensor 'w' has data_offsets [0, 8] spanning 8 bytes, which does not match its shape [3] of F32 (12 bytes)");
        AssertRejected("{" + Entry("s", "BF16", "[]", "[0,4]") + "}", 4, "does not match its shape [] of BF16 (2 bytes)");
    }

    [Fact]
    public void DuplicateNames()
    {
        AssertRejected("{" + Entry("w", "U8", "[2]", "[0,2]") + "," + Entry("w", "U8", "[2]", "[2,4]") + "}", 4, "duplicate key 'w' in the header");
        AssertRejected("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key '__metadata__'");
        AssertRejected("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate metadata key 'k'");
    }

    [Fact]
    public void MalformedMetadata()
    {
        AssertRejected("{\"__metadata__\":{\"epoch\":3}}", 0, "metadata value 'epoch' must be a string, but it is a number");
        AssertRejected("{\"__metadata__\":[\"a\"]}", 0, "'__metadata__' must be an object of strings, but it is an array");
    }

    [Fact]
    public void BoolBytesOtherThanZeroOrOneAreRejectedOnRead()
    {
        var path = _dir.WriteRaw("bool.safetensors", SafetensorsBytes.Build("{" + Entry("m", "BOOL", "[3]", "[0,3]") + "}", new byte[] { 1, 0, 2 }));
        using var reader = SafetensorsFile.Open(path);
        var ex = Assert.Throws<SafetensorsFormatException>(() => reader.ReadTensor("m"));
        Assert.Contains(path, ex.Message);
        Assert.Contains("BOOL tensor 'm' holds the byte 2 at element 2; only 0 and 1 are valid", ex.Message);
    }

    [Fact]
    public void FileTruncatedAfterOpeningIsReportedOnRead()
    {
        var path = _dir.WriteRaw("trunc.safetensors", SafetensorsBytes.Build("{" + Entry("w", "U8", "[16]", "[0,16]") + "}", new byte[16]));
        using var reader = SafetensorsFile.Open(path);
        using (var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
        {
            RandomAccess.SetLength(handle, new FileInfo(path).Length - 10);
        }
        var ex = Assert.Throws<SafetensorsFormatException>(() => reader.ReadTensor("w"));
        Assert.Contains(path, ex.Message);
        Assert.Contains("was it truncated after it was opened?", ex.Message);
    }

    [Fact]
    public void AWellFormedFileStillOpens()
    {
        // Guards the cases above: the same builder with consistent values is accepted.
        var path = _dir.WriteRaw("good.safetensors",
            SafetensorsBytes.Build("{" + Entry("a", "U8", "[4]", "[0,4]") + "," + Entry("b", "F32", "[1]", "[4,8]") + "}", new byte[8]));
        using var reader = SafetensorsFile.Open(path);
        Assert.Equal(2, reader.Tensors.Count);
    }
}
