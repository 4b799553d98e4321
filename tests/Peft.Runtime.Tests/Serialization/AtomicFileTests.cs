using Peft.Checkpoints;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>The one atomic writer: the target is the old file or the new one, never a torn one, and no temporary file stays.</summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("peft-atomic-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void WritesTextBytesAndStreamsAndReplacesTheTarget()
    {
        string path = Path.Combine(_dir, "a.json");
        AtomicFile.WriteAllText(path, "{\"é\": 1}");
        Assert.Equal("{\"é\": 1}", File.ReadAllText(path));
        Assert.NotEqual(0xEF, File.ReadAllBytes(path)[0]);   // no byte-order mark
        AtomicFile.WriteAllBytes(path, new byte[] { 1, 2, 3 });
        Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(path));
        AtomicFile.Write(path, s => s.Write([4, 5]), preallocationSize: 2);
        Assert.Equal(new byte[] { 4, 5 }, File.ReadAllBytes(path));
        Assert.Equal(["a.json"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void AFailedWriteLeavesTheOldFileAndNoTemporaryFile()
    {
        string path = Path.Combine(_dir, "status.json");
        AtomicFile.WriteAllText(path, "old");
        var error = Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write("half of the new con"u8);
            throw new InvalidOperationException("killed mid-write");
        }));
        Assert.Equal("killed mid-write", error.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal(["status.json"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }
}
