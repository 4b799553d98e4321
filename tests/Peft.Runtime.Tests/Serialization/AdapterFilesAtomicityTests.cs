using Peft.Serialization;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>Saving over an existing adapter replaces both files whole and leaves nothing else behind.</summary>
public sealed class AdapterFilesAtomicityTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Saving_over_an_existing_adapter_leaves_the_new_valid_files_and_no_temporaries()
    {
        string dir = _dir.File("adapter");
        using var first = AfModel.Adapted();
        RandomizeAdapters(first);
        AdapterFiles.Save(first, dir);

        using var second = new AfKronModel();
        RandomizeAdapters(second);
        AdapterFiles.Save(second, dir);

        Assert.Equal(new[] { AdapterFiles.ConfigFileName, AdapterFiles.WeightsFileName },
            Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal));
        Assert.Equal("LOKR", (string?)Config(dir)["peft_type"]);
        Assert.All(Keys(Path.Combine(dir, AdapterFiles.WeightsFileName)), k => Assert.Contains(".lokr_", k));

        using var fresh = new AfKronModel();
        AdapterFiles.Load(fresh, dir);
        var expected = second.AdapterParameters();
        var actual = fresh.AdapterParameters();
        for (int i = 0; i < expected.Count; i++) AssertBitwiseEqual(expected[i], actual[i]);
    }

    [Fact]
    public void Repeated_saves_into_one_directory_keep_exactly_two_files()
    {
        string dir = _dir.File("adapter");
        using var model = AfModel.Adapted();
        for (int i = 0; i < 3; i++)
        {
            RandomizeAdapters(model);
            AdapterFiles.Save(model, dir);
        }
        Assert.Equal(2, Directory.GetFileSystemEntries(dir).Length);
        using var fresh = AfModel.Adapted();
        AdapterFiles.Load(fresh, dir);
        var expected = model.AdapterParameters();
        var actual = fresh.AdapterParameters();
        for (int i = 0; i < expected.Count; i++) AssertBitwiseEqual(expected[i], actual[i]);
    }
}
