using System.Security.Cryptography;
using Peft.Fuzz;

namespace Peft.Fuzz.Tests;

/// <summary>The mutator is deterministic: the same run seed, kind and case number give the same bytes.</summary>
public sealed class MutatorTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"peft-fuzz-mutator-{Guid.NewGuid():N}");

    public MutatorTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Mutator.Delete(_dir);

    [Theory]
    [InlineData("adapter-lora")]
    [InlineData("hf-llama-sharded")]
    [InlineData("training-checkpoint")]
    [InlineData("safetensors")]
    public void The_same_seed_gives_the_same_mutations(string kindName)
    {
        var kind = FileKinds.All.Single(k => k.Name == kindName);
        var seedDir = Path.Combine(_dir, "seed");
        Directory.CreateDirectory(seedDir);
        var seed = kind.BuildSeed(seedDir);
        var again = Path.Combine(_dir, "seed-again");
        Directory.CreateDirectory(again);
        Assert.Equal(Fingerprint(seed), Fingerprint(kind.BuildSeed(again)));

        for (int i = 0; i < 25; i++)
        {
            var first = Mutated(kind, seed, i, "a");
            var second = Mutated(kind, seed, i, "b");
            Assert.Equal(first.Log, second.Log);
            Assert.Equal(first.Fingerprint, second.Fingerprint);
        }
    }

    private (string Log, string Fingerprint) Mutated(FileKind kind, string seed, int index, string tag)
    {
        var caseDir = Path.Combine(_dir, $"{tag}-{index}");
        Directory.CreateDirectory(caseDir);
        var artifact = Path.Combine(caseDir, Path.GetFileName(seed));
        CopyTree(seed, artifact);
        var random = Worker.CaseRandom(20250101, kind.Name, index);
        var mutator = new Mutator(random);
        mutator.Mutate(artifact, caseDir);
        kind.Repair?.Invoke(artifact, mutator.Touched, random);
        var result = (string.Join("; ", mutator.Log), Fingerprint(artifact).Replace(caseDir, "<case>", StringComparison.Ordinal));
        Mutator.Delete(caseDir);
        return result;
    }

    private static string Fingerprint(string path)
    {
        if (Mutator.IsLink(path)) return $"link -> {Path.GetFileName(new FileInfo(path).LinkTarget ?? new DirectoryInfo(path).LinkTarget)}";
        if (Directory.Exists(path))
        {
            return string.Join("\n", Directory.GetFileSystemEntries(path).Order(StringComparer.Ordinal)
                .Select(e => Path.GetFileName(e) + ": " + Fingerprint(e)));
        }
        if (!Mutator.IsRegularFile(path)) return File.Exists(path) ? "special" : "absent";
        return Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));
    }

    private static void CopyTree(string source, string destination)
    {
        if (File.Exists(source))
        {
            File.Copy(source, destination);
            return;
        }
        Directory.CreateDirectory(destination);
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
        foreach (var dir in Directory.GetDirectories(source)) CopyTree(dir, Path.Combine(destination, Path.GetFileName(dir)));
    }
}
