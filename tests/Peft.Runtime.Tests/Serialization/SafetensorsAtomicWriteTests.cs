using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>Writes replace the destination atomically; any failure leaves the previous file intact and no temporary file.</summary>
public sealed class SafetensorsAtomicWriteTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string WriteOriginal(out byte[] bytes)
    {
        using var original = tensor(new float[] { 1, 2, 3 });
        var path = _dir.File("model.safetensors");
        SafetensorsFile.Write(path, new[] { KeyValuePair.Create("w", original) }, new Dictionary<string, string> { ["v"] = "1" });
        bytes = File.ReadAllBytes(path);
        return path;
    }

    private void AssertOriginalIntact(string path, byte[] bytes)
    {
        Assert.Equal(bytes, File.ReadAllBytes(path));
        Assert.Equal(new[] { "model.safetensors" }, _dir.FileNames());
        using var reader = SafetensorsFile.Open(path);
        using var w = reader.ReadTensor("w");
        Assert.Equal(new float[] { 1, 2, 3 }, w.data<float>().ToArray());
    }

    [Fact]
    public void OverwritingLeavesTheNewValidFileAndNoTemporaryFiles()
    {
        var path = WriteOriginal(out var before);
        using var replacement = tensor(new long[] { 10, 20 });
        SafetensorsFile.Write(path, new[] { KeyValuePair.Create("other", replacement) });

        Assert.NotEqual(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { "model.safetensors" }, _dir.FileNames());
        using var reader = SafetensorsFile.Open(path);
        Assert.Equal(new[] { "other" }, reader.Tensors.Select(t => t.Name));
        Assert.Empty(reader.Metadata);
        using var other = reader.ReadTensor("other");
        Assert.Equal(new long[] { 10, 20 }, other.data<long>().ToArray());
    }

    [Fact]
    public void DuplicateNameFailsAndLeavesThePreviousFile()
    {
        var path = WriteOriginal(out var before);
        using var a = tensor(new float[] { 9 });
        using var b = tensor(new float[] { 8 });
        var ex = Assert.Throws<ArgumentException>(() =>
            SafetensorsFile.Write(path, new[] { KeyValuePair.Create("w", a), KeyValuePair.Create("w", b) }));
        Assert.Contains("Duplicate tensor name 'w'", ex.Message);
        AssertOriginalIntact(path, before);
    }

    [Fact]
    public void UnsupportedDTypeFailsAndLeavesThePreviousFile()
    {
        var path = WriteOriginal(out var before);
        using var fine = tensor(new float[] { 9 });
        using var complex = zeros(new long[] { 2 }, dtype: ScalarType.ComplexFloat32);
        var ex = Assert.Throws<ArgumentException>(() =>
            SafetensorsFile.Write(path, new[] { KeyValuePair.Create("fine", fine), KeyValuePair.Create("z", complex) }));
        Assert.Contains("Tensor 'z' has dtype ComplexFloat32", ex.Message);
        AssertOriginalIntact(path, before);
    }

    [Fact]
    public void InvalidNamesAreRejected()
    {
        var path = WriteOriginal(out var before);
        using var t = tensor(new float[] { 9 });
        Assert.Contains("null or empty", Assert.Throws<ArgumentException>(() =>
            SafetensorsFile.Write(path, new[] { KeyValuePair.Create("", t) })).Message);
        Assert.Contains("'__metadata__' is reserved", Assert.Throws<ArgumentException>(() =>
            SafetensorsFile.Write(path, new[] { KeyValuePair.Create("__metadata__", t) })).Message);
        AssertOriginalIntact(path, before);
    }

    [Fact]
    public void FailureWhileWritingDataRemovesTheTemporaryFileAndKeepsThePreviousFile()
    {
        var path = WriteOriginal(out var before);
        using var first = ones(1000);
        using var second = ones(1000);
        var seenTemporary = new List<string>();
        var ex = Assert.Throws<IOException>(() => SafetensorsFile.Write(path,
            new[] { KeyValuePair.Create("first", first), KeyValuePair.Create("second", second) }, null, chunkBytes: 64,
            beforeTensorData: name =>
            {
                if (name == "second")
                {
                    // The temporary file exists and already holds the header and the first tensor.
                    seenTemporary.AddRange(_dir.FileNames().Where(n => n != "model.safetensors"));
                    throw new IOException("simulated disk failure");
                }
            }));
        Assert.Equal("simulated disk failure", ex.Message);
        var temp = Assert.Single(seenTemporary);
        Assert.StartsWith(".model.safetensors.", temp);
        Assert.EndsWith(".tmp", temp);
        AssertOriginalIntact(path, before);
    }

    [Fact]
    public void AnOpenReaderKeepsReadingTheFileItOpenedWhileItIsReplaced()
    {
        var path = WriteOriginal(out _);
        using var oldReader = SafetensorsFile.Open(path);
        using var replacement = tensor(new float[] { 7, 7, 7 });
        SafetensorsFile.Write(path, new[] { KeyValuePair.Create("w", replacement) });

        using var oldW = oldReader.ReadTensor("w");
        Assert.Equal(new float[] { 1, 2, 3 }, oldW.data<float>().ToArray());
        using var newReader = SafetensorsFile.Open(path);
        using var newW = newReader.ReadTensor("w");
        Assert.Equal(new float[] { 7, 7, 7 }, newW.data<float>().ToArray());
    }

    [Fact]
    public void WritingIntoAMissingDirectoryFailsWithoutCreatingAnything()
    {
        using var t = tensor(new float[] { 1 });
        var path = Path.Combine(_dir.Root, "missing", "x.safetensors");
        Assert.Throws<DirectoryNotFoundException>(() => SafetensorsFile.Write(path, new[] { KeyValuePair.Create("t", t) }));
        Assert.False(Directory.Exists(Path.Combine(_dir.Root, "missing")));
    }
}
