using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Peft.Text;

/// <summary>The kinds of tokenizer files <see cref="TokenizerFiles.FromDirectory(string)"/> recognises.</summary>
public enum TokenizerKind
{
    /// <summary>A SentencePiece model, <c>tokenizer.model</c> (Llama, Mistral, T5, ...): <see cref="SentencePieceTokenizer"/>.</summary>
    SentencePiece,

    /// <summary>GPT-2 byte-level BPE, <c>vocab.json</c> + <c>merges.txt</c> (or <c>encoder.json</c> + <c>vocab.bpe</c>): <see cref="TiktokenTokenizer"/>.</summary>
    Gpt2Bpe,

    /// <summary>A tiktoken ranks file named after its encoding (<c>cl100k_base.tiktoken</c>, ...): <see cref="TiktokenTokenizer"/>.</summary>
    Tiktoken,

    /// <summary>BERT WordPiece, <c>vocab.txt</c>: <see cref="BertTokenizer"/>.</summary>
    BertWordPiece,
}

/// <summary>
/// A tokenizer found in a folder by <see cref="TokenizerFiles.FromDirectory(string)"/>, with the special ids the folder's
/// configuration names.
/// </summary>
/// <param name="Kind">Which kind of files were found.</param>
/// <param name="Files">The files the tokenizer was built from (the configuration files read are in <paramref name="ConfigFiles"/>).</param>
/// <param name="ConfigFiles">The Hugging Face configuration files that were present and read (<c>tokenizer_config.json</c>,
/// <c>special_tokens_map.json</c>); empty when there were none.</param>
/// <param name="Tokenizer">The Microsoft.ML.Tokenizers tokenizer.</param>
/// <param name="BeginningOfSentenceId">The id of the beginning-of-sequence token, when the model or its configuration names one.</param>
/// <param name="EndOfSentenceId">The id of the end-of-sequence token (GPT-2: <c>&lt;|endoftext|&gt;</c>), when named.</param>
/// <param name="AddsBeginningOfSentence">Whether <c>Tokenizer.EncodeToIds(text)</c>, called through the <see cref="Microsoft.ML.Tokenizers.Tokenizer"/>
/// base class, starts with the beginning-of-sequence id (SentencePiece: <c>add_bos_token</c>, default true; others: false).</param>
/// <param name="AddsEndOfSentence">Whether that call ends with the end-of-sequence id (SentencePiece: <c>add_eos_token</c>,
/// default false; others: false). A <see cref="BertTokenizer"/>'s own <c>EncodeToIds(text)</c> overload adds
/// <c>[CLS]</c> and <c>[SEP]</c>; the base-class call does not.</param>
public sealed record DirectoryTokenizer(
    TokenizerKind Kind,
    IReadOnlyList<string> Files,
    IReadOnlyList<string> ConfigFiles,
    Tokenizer Tokenizer,
    int? BeginningOfSentenceId,
    int? EndOfSentenceId,
    bool AddsBeginningOfSentence,
    bool AddsEndOfSentence);

/// <summary>
/// Finds and loads the tokenizer in a Hugging Face-style folder (a checkpoint folder, or one holding only tokenizer
/// files), through Microsoft.ML.Tokenizers. Looked for, in this order: <c>tokenizer.model</c> (SentencePiece, through
/// <see cref="SentencePieceTokenizerFiles"/>), <c>vocab.json</c> + <c>merges.txt</c> or <c>encoder.json</c> + <c>vocab.bpe</c>
/// (GPT-2 BPE, through <see cref="Gpt2TokenizerFiles"/>), <c>*.tiktoken</c>, <c>vocab.txt</c> (BERT, through
/// <see cref="BertVocabulary"/>). <c>tokenizer.json</c> alone is not read.
/// </summary>
/// <remarks>
/// From <c>tokenizer_config.json</c> (and <c>special_tokens_map.json</c> for the token names), where present:
/// <c>add_bos_token</c> and <c>add_eos_token</c> (SentencePiece; defaults true and false as in Hugging Face's
/// <c>LlamaTokenizer</c>), <c>bos_token</c> and <c>eos_token</c> (a string or an object with <c>content</c>; they must be
/// in the vocabulary), <c>do_lower_case</c> (BERT; default true). Nothing else in them is applied (added tokens,
/// chat templates, <c>model_max_length</c>, ...).
/// </remarks>
public static class TokenizerFiles
{
    /// <summary>Hugging Face's tokenizer settings file.</summary>
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    /// <summary>Hugging Face's special-token names file.</summary>
    public const string SpecialTokensMapFileName = "special_tokens_map.json";

    /// <summary>The tiktoken encodings recognised by file name, and the Microsoft.ML.Tokenizers model that uses each
    /// (its pre-tokenizer pattern and special tokens).</summary>
    private static readonly Dictionary<string, string> TiktokenModels = new(StringComparer.OrdinalIgnoreCase)
    {
        ["o200k_base"] = "gpt-4o",
        ["cl100k_base"] = "gpt-4",
        ["p50k_base"] = "text-davinci-003",
        ["r50k_base"] = "text-davinci-001",
        ["gpt2"] = "gpt2",
    };

    /// <summary>Finds the tokenizer files in <paramref name="directory"/> and creates the tokenizer (see the class remarks).</summary>
    /// <param name="directory">The folder to look in (not its subfolders).</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">No recognised tokenizer files; the message lists what was looked for and what is there.</exception>
    /// <exception cref="InvalidDataException">A file was found but cannot be used (see the loaders), or a configured
    /// bos/eos token is not in the vocabulary.</exception>
    /// <exception cref="NotSupportedException">A SentencePiece model Microsoft.ML.Tokenizers would not reproduce, or a
    /// tiktoken file whose name is not a known encoding.</exception>
    public static DirectoryTokenizer FromDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"Tokenizer folder not found: {directory}");
        var config = TokenizerConfig.Read(directory);

        string sentencePiece = Path.Combine(directory, SentencePieceTokenizerFiles.FileName);
        if (File.Exists(sentencePiece)) return SentencePiece(sentencePiece, config);

        foreach (var (vocab, merges) in new[] { ("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe") })
        {
            if (File.Exists(Path.Combine(directory, vocab)) && File.Exists(Path.Combine(directory, merges)))
            {
                var files = Gpt2TokenizerFiles.FromDirectory(directory);
                var gpt2 = files.CreateTokenizer();
                return new DirectoryTokenizer(TokenizerKind.Gpt2Bpe, [files.VocabPath, files.MergesPath], config.Files, gpt2,
                    config.TokenId("bos_token", t => TiktokenId(gpt2, t)),
                    config.TokenId("eos_token", t => TiktokenId(gpt2, t)) ?? Gpt2TokenizerFiles.EndOfTextId,
                    AddsBeginningOfSentence: false, AddsEndOfSentence: false);
            }
        }

        var tiktokenFiles = Directory.GetFiles(directory, "*.tiktoken").Order(StringComparer.Ordinal).ToArray();
        if (tiktokenFiles.Length > 1)
            throw new NotSupportedException($"{directory} holds {tiktokenFiles.Length} .tiktoken files ({string.Join(", ", tiktokenFiles.Select(Path.GetFileName))}); keep one.");
        if (tiktokenFiles.Length == 1) return Tiktoken(tiktokenFiles[0], config);

        string bertVocab = Path.Combine(directory, "vocab.txt");
        if (File.Exists(bertVocab))
        {
            var bert = BertVocabulary.CreateTokenizer(bertVocab, config.Bool("do_lower_case") ?? true);
            var lines = new Dictionary<string, int>(StringComparer.Ordinal);
            int line = 0;
            foreach (string token in File.ReadLines(bertVocab)) lines.TryAdd(token, line++);
            // BERT has no bos/eos: [CLS] and [SEP] stand in for them unless the configuration names others. BertTokenizer's
            // own EncodeToIds(text) adds them; the Tokenizer base class's EncodeToIds(text) does not.
            return new DirectoryTokenizer(TokenizerKind.BertWordPiece, [bertVocab], config.Files, bert,
                config.TokenId("bos_token", bert.SpecialTokens, lines) ?? bert.ClassificationTokenId,
                config.TokenId("eos_token", bert.SpecialTokens, lines) ?? bert.SeparatorTokenId,
                AddsBeginningOfSentence: false, AddsEndOfSentence: false);
        }

        string present = string.Join(", ", Directory.EnumerateFileSystemEntries(directory).Select(Path.GetFileName).Order(StringComparer.Ordinal).Take(20));
        throw new FileNotFoundException(
            $"No tokenizer files in {directory}. Looked for: tokenizer.model (SentencePiece), vocab.json + merges.txt or " +
            "encoder.json + vocab.bpe (GPT-2 BPE), *.tiktoken (tiktoken ranks), vocab.txt (BERT WordPiece)" +
            (File.Exists(Path.Combine(directory, "tokenizer.json")) ? "; tokenizer.json (a Hugging Face fast tokenizer) is there but is not read" : "") +
            $". The folder holds: {(present.Length == 0 ? "nothing" : present)}.");
    }

    private static DirectoryTokenizer SentencePiece(string path, TokenizerConfig config)
    {
        bool addBos = config.Bool("add_bos_token") ?? true, addEos = config.Bool("add_eos_token") ?? false;
        var tokenizer = SentencePieceTokenizerFiles.Load(path, addBos, addEos);
        var own = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, id) in new[] { (tokenizer.UnknownToken, tokenizer.UnknownId), (tokenizer.BeginningOfSentenceToken, tokenizer.BeginningOfSentenceId), (tokenizer.EndOfSentenceToken, tokenizer.EndOfSentenceId) })
            if (!string.IsNullOrEmpty(token) && id >= 0) own[token] = id;
        int? bos = config.TokenId("bos_token", own, tokenizer.SpecialTokens, tokenizer.Vocabulary);
        int? eos = config.TokenId("eos_token", own, tokenizer.SpecialTokens, tokenizer.Vocabulary);
        if ((bos is { } b && b != tokenizer.BeginningOfSentenceId) || (eos is { } e && e != tokenizer.EndOfSentenceId))
        {
            // The configuration names other tokens than the model's own <s> / </s>: Microsoft.ML.Tokenizers adds the
            // model's, so adding is left to the caller (AddsBeginningOfSentence / AddsEndOfSentence false).
            tokenizer = SentencePieceTokenizerFiles.Load(path, addBeginningOfSentence: false, addEndOfSentence: false);
            addBos = addEos = false;
        }
        return new DirectoryTokenizer(TokenizerKind.SentencePiece, [path], config.Files, tokenizer,
            bos ?? NonNegative(tokenizer.BeginningOfSentenceId), eos ?? NonNegative(tokenizer.EndOfSentenceId), addBos, addEos);
    }

    private static DirectoryTokenizer Tiktoken(string path, TokenizerConfig config)
    {
        string encoding = Path.GetFileNameWithoutExtension(path);
        if (!TiktokenModels.TryGetValue(encoding, out string? model))
            throw new NotSupportedException(
                $"{path}: a .tiktoken file does not say which pre-tokenizer pattern and special tokens go with it, so its name must be " +
                $"one of the encodings {string.Join(", ", TiktokenModels.Keys)}. Rename it, or create TiktokenTokenizer.Create(path, preTokenizer, normalizer, specialTokens) yourself.");
        TiktokenTokenizer tokenizer;
        try
        {
            using var stream = File.OpenRead(path);
            tokenizer = TiktokenTokenizer.CreateForModel(model, stream);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path} is not a tiktoken ranks file (base64 token, space, rank on each line): {e.Message}", e);
        }
        return new DirectoryTokenizer(TokenizerKind.Tiktoken, [path], config.Files, tokenizer,
            config.TokenId("bos_token", t => TiktokenId(tokenizer, t)),
            config.TokenId("eos_token", t => TiktokenId(tokenizer, t)) ?? EndOfText(tokenizer),
            AddsBeginningOfSentence: false, AddsEndOfSentence: false);
    }

    private static int? EndOfText(TiktokenTokenizer tokenizer) =>
        tokenizer.SpecialTokens is { } special && special.TryGetValue(Gpt2TokenizerFiles.EndOfTextToken, out int id) ? id : null;

    /// <summary>A special token's id, or the id of an ordinary token that encodes to exactly one id.</summary>
    private static int? TiktokenId(TiktokenTokenizer tokenizer, string token)
    {
        if (tokenizer.SpecialTokens is { } special && special.TryGetValue(token, out int id)) return id;
        var ids = tokenizer.EncodeToIds(token);
        return ids.Count == 1 ? ids[0] : null;
    }

    private static int? NonNegative(int id) => id >= 0 ? id : null;

    /// <summary>The values read from <c>tokenizer_config.json</c>, then <c>special_tokens_map.json</c> for token names.</summary>
    private sealed class TokenizerConfig
    {
        private readonly List<(string Path, Dictionary<string, JsonElement> Values)> _sources = [];

        public IReadOnlyList<string> Files => _sources.Select(s => s.Path).ToArray();

        public static TokenizerConfig Read(string directory)
        {
            var config = new TokenizerConfig();
            foreach (string name in new[] { TokenizerConfigFileName, SpecialTokensMapFileName })
            {
                string path = Path.Combine(directory, name);
                if (!File.Exists(path)) continue;
                try
                {
                    using var json = JsonDocument.Parse(File.ReadAllBytes(path));
                    if (json.RootElement.ValueKind != JsonValueKind.Object)
                        throw new InvalidDataException($"{path}: expected a JSON object.");
                    config._sources.Add((path, json.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone(), StringComparer.Ordinal)));
                }
                catch (JsonException e)
                {
                    throw new InvalidDataException($"{path}: invalid JSON: {e.Message}", e);
                }
            }
            return config;
        }

        public bool? Bool(string key)
        {
            foreach (var (path, values) in _sources)
            {
                if (!values.TryGetValue(key, out var value) || value.ValueKind == JsonValueKind.Null) continue;
                return value.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    _ => throw new InvalidDataException($"{path}: '{key}' should be true or false, not {value.GetRawText()}."),
                };
            }
            return null;
        }

        /// <summary>The id of the token named by <paramref name="key"/> (a string, or an object with <c>content</c>), or null when unnamed.</summary>
        public int? TokenId(string key, params IReadOnlyDictionary<string, int>?[] vocabularies) =>
            TokenId(key, token =>
            {
                foreach (var vocabulary in vocabularies)
                    if (vocabulary is not null && vocabulary.TryGetValue(token, out int id)) return id;
                return null;
            });

        /// <summary>The id of the token named by <paramref name="key"/>, found by <paramref name="lookup"/>, or null when unnamed.</summary>
        public int? TokenId(string key, Func<string, int?> lookup)
        {
            foreach (var (path, values) in _sources)
            {
                if (!values.TryGetValue(key, out var value) || value.ValueKind == JsonValueKind.Null) continue;
                string? token = value.ValueKind switch
                {
                    JsonValueKind.String => value.GetString(),
                    JsonValueKind.Object when value.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String => content.GetString(),
                    _ => throw new InvalidDataException($"{path}: '{key}' should be a token string or an object with \"content\", not {value.GetRawText()}."),
                };
                if (token is null) continue;
                if (lookup(token) is { } id) return id;
                throw new InvalidDataException($"{path}: {key} '{token}' is not in the tokenizer's vocabulary.");
            }
            return null;
        }
    }
}
