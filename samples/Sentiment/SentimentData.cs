using System.Text.Json;
using Peft.Data;

namespace Sentiment;

/// <summary>One labelled sentence.</summary>
/// <param name="Text">The sentence.</param>
/// <param name="Label">1 positive, 0 negative.</param>
/// <param name="Source">The fixture it comes from: <c>imdb</c>, <c>amazon</c> or <c>yelp</c>.</param>
public sealed record SentimentExample(string Text, int Label, string Source);

/// <summary>
/// The UCI "Sentiment Labelled Sentences" as shipped in npm <c>sentiment</c> 5.0.2 (<c>test/fixtures/{imdb,amazon,yelp}.json</c>,
/// 1001 entries each: 500 positive, 500 negative and one empty entry without a class), and a fixed, seeded split.
/// </summary>
public static class SentimentData
{
    /// <summary>The npm package holding the data.</summary>
    public const string PackageName = "sentiment";

    /// <summary>The pinned package version.</summary>
    public const string PackageVersion = "5.0.2";

    /// <summary>The fixtures, in the order they are read.</summary>
    public static IReadOnlyList<string> Sources { get; } = ["imdb", "amazon", "yelp"];

    /// <summary>Fetches the package once (npm's own client, through <paramref name="cache"/>) and reads every fixture.</summary>
    /// <param name="cache">The package cache.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    public static async Task<IReadOnlyList<SentimentExample>> LoadAsync(NpmPackageCache cache, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cache);
        string packageDir = await cache.GetPackageAsync(PackageName, PackageVersion, cancellationToken).ConfigureAwait(false);
        return Read(packageDir);
    }

    /// <summary>
    /// Reads the three fixtures of an unpacked package: entries with an empty text or no class are dropped, and a text
    /// seen before (in any fixture, compared after trimming) is dropped, so no sentence can be both in training and test data.
    /// </summary>
    /// <param name="packageDir">The unpacked package folder.</param>
    /// <exception cref="InvalidDataException">A fixture is not an array of <c>{"text", "class"}</c> objects, or a class is not 0 or 1.</exception>
    public static IReadOnlyList<SentimentExample> Read(string packageDir)
    {
        ArgumentNullException.ThrowIfNull(packageDir);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var examples = new List<SentimentExample>();
        foreach (var source in Sources)
        {
            string path = Path.Combine(packageDir, "test", "fixtures", source + ".json");
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            if (document.RootElement.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{path} is not a JSON array.");
            foreach (var item in document.RootElement.EnumerateArray())
            {
                if (!item.TryGetProperty("text", out var textElement) || textElement.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{path}: an entry has no string 'text'.");
                string text = textElement.GetString()!.Trim();
                if (text.Length == 0 || !item.TryGetProperty("class", out var label) || label.ValueKind == JsonValueKind.Null) continue;
                int value = label.GetInt32();
                if (value is not (0 or 1)) throw new InvalidDataException($"{path}: class {value} is not 0 or 1.");
                if (seen.Add(text)) examples.Add(new SentimentExample(text, value, source));
            }
        }
        return examples;
    }

    /// <summary>
    /// A fixed split: within each (source, label) group, a seeded Fisher-Yates shuffle (<see cref="Random"/> with
    /// <paramref name="seed"/>) puts round(<paramref name="testFraction"/> x group size) examples in the test set. The
    /// same examples and seed always give the same split; both parts keep the examples' original order.
    /// </summary>
    /// <param name="examples">The examples (distinct texts).</param>
    /// <param name="testFraction">Held-out fraction, in (0, 1).</param>
    /// <param name="seed">The shuffle seed.</param>
    public static (IReadOnlyList<SentimentExample> Train, IReadOnlyList<SentimentExample> Test) Split(
        IReadOnlyList<SentimentExample> examples, double testFraction = 0.2, int seed = 20240501)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (!(testFraction > 0 && testFraction < 1)) throw new ArgumentOutOfRangeException(nameof(testFraction), testFraction, "Must be in (0, 1).");
        var random = new Random(seed);
        var test = new HashSet<int>();
        var groups = Enumerable.Range(0, examples.Count)
            .GroupBy(i => (examples[i].Source, examples[i].Label))
            .OrderBy(g => g.Key.Source, StringComparer.Ordinal).ThenBy(g => g.Key.Label);
        foreach (var group in groups)
        {
            int[] indices = group.ToArray();
            random.Shuffle(indices);
            foreach (int i in indices.Take((int)Math.Round(testFraction * indices.Length, MidpointRounding.AwayFromZero))) test.Add(i);
        }
        var trainPart = Enumerable.Range(0, examples.Count).Where(i => !test.Contains(i)).Select(i => examples[i]).ToList();
        var testPart = Enumerable.Range(0, examples.Count).Where(test.Contains).Select(i => examples[i]).ToList();
        return (trainPart, testPart);
    }
}
