using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using Peft.Data;

namespace Peft.Runtime.Tests.Data;

public sealed class NpmPackageCacheTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-npm-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private string MakeTarGz(params (string Name, string Content)[] entries)
    {
        Directory.CreateDirectory(_dir);
        string path = Path.Combine(_dir, "pkg.tgz");
        using var file = File.Create(path);
        using var gzip = new GZipStream(file, CompressionLevel.Fastest);
        using var writer = new TarWriter(gzip);
        foreach (var (name, content) in entries)
        {
            var entry = new PaxTarEntry(TarEntryType.RegularFile, name)
            {
                DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)),
            };
            writer.WriteEntry(entry);
        }
        return path;
    }

    [Fact]
    public void ExtractsRegularFilesWithTheirContent()
    {
        string tgz = MakeTarGz(("package/data/a.txt", "hello"), ("package/package.json", "{\"name\":\"x\"}"));
        string dest = Path.Combine(_dir, "out");
        NpmPackageCache.ExtractTarGz(tgz, dest);
        Assert.Equal("hello", File.ReadAllText(Path.Combine(dest, "package/data/a.txt")));
        Assert.Equal("{\"name\":\"x\"}", File.ReadAllText(Path.Combine(dest, "package/package.json")));
    }

    [Fact]
    public void RefusesEntriesThatEscapeTheDestination()
    {
        string tgz = MakeTarGz(("package/ok.txt", "1"), ("../evil.txt", "2"));
        var ex = Assert.Throws<InvalidDataException>(() => NpmPackageCache.ExtractTarGz(tgz, Path.Combine(_dir, "out")));
        Assert.Contains("../evil.txt", ex.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "evil.txt")));
    }

    [Fact]
    public async Task ReusesAnUnpackedPackageWithoutRunningNpm()
    {
        var cache = new NpmPackageCache(Path.Combine(_dir, "cache"));
        string expected = Path.Combine(cache.Root, "npm", "@scope+name@1.2.3", "package");
        Directory.CreateDirectory(expected);
        File.WriteAllText(Path.Combine(expected, "marker"), "cached");
        string dir = await cache.GetPackageAsync("@scope/name", "1.2.3");
        Assert.Equal(expected, dir);
        Assert.Equal("cached", File.ReadAllText(Path.Combine(dir, "marker")));
    }
}
