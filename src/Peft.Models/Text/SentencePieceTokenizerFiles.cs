using Microsoft.ML.Tokenizers;

namespace Peft.Text;

/// <summary>
/// SentencePiece tokenizers (<c>tokenizer.model</c>: Llama, Mistral, T5, ...) from local files, through
/// Microsoft.ML.Tokenizers' <see cref="SentencePieceTokenizer"/>. This class checks the model before handing it over,
/// so that the models Microsoft.ML.Tokenizers 2.0.1 would encode differently from SentencePiece are refused with a
/// reason instead of giving wrong ids; the BPE and unigram algorithms themselves are Microsoft.ML.Tokenizers'.
/// </summary>
/// <remarks>
/// Verified against SentencePiece 0.1.97's own ids (<c>spm_encode</c>) on 25 texts for a Llama-style BPE model and a
/// unigram model, both with the identity normaliser and byte fallback (see <c>docs/text.md</c>).
/// </remarks>
public static class SentencePieceTokenizerFiles
{
    /// <summary>The file name Hugging Face checkpoints use for a SentencePiece model.</summary>
    public const string FileName = "tokenizer.model";

    /// <summary>Reads what the model at <paramref name="path"/> says about itself, without creating a tokenizer.</summary>
    /// <param name="path">A <c>tokenizer.model</c> file, or a folder that holds one.</param>
    /// <exception cref="FileNotFoundException">No model at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a SentencePiece model.</exception>
    public static SentencePieceModelInfo Inspect(string path)
    {
        string file = ResolveFile(path);
        return SentencePieceModelInfo.Read(File.ReadAllBytes(file), file);
    }

    /// <summary>
    /// Creates the tokenizer for the SentencePiece model at <paramref name="path"/>. <c>EncodeToIds(text)</c> then adds
    /// <c>&lt;s&gt;</c> and <c>&lt;/s&gt;</c> as asked here; the overloads with explicit flags override that per call.
    /// </summary>
    /// <param name="path">A <c>tokenizer.model</c> file, or a folder that holds one.</param>
    /// <param name="addBeginningOfSentence">Start every encoding with <c>&lt;s&gt;</c> (Llama's default: true).</param>
    /// <param name="addEndOfSentence">End every encoding with <c>&lt;/s&gt;</c> (Llama's default: false).</param>
    /// <param name="specialTokens">Extra tokens matched whole in the text before SentencePiece runs (for example
    /// Hugging Face's added tokens), by text and id; null for none. <c>&lt;s&gt;</c> in plain text is not special.</param>
    /// <exception cref="FileNotFoundException">No model at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a SentencePiece model (empty, truncated, another format).</exception>
    /// <exception cref="NotSupportedException">The model is one Microsoft.ML.Tokenizers would encode differently from
    /// SentencePiece: a normaliser other than <c>identity</c> (such as the default <c>nmt_nfkc</c>), whitespace removal
    /// (<c>remove_extra_whitespaces</c>, SentencePiece's default), or a word or character model. The message says what to do.</exception>
    public static SentencePieceTokenizer Load(
        string path,
        bool addBeginningOfSentence = true,
        bool addEndOfSentence = false,
        IReadOnlyDictionary<string, int>? specialTokens = null)
    {
        string file = ResolveFile(path);
        return Load(File.ReadAllBytes(file), file, addBeginningOfSentence, addEndOfSentence, specialTokens);
    }

    /// <summary>Creates the tokenizer from the bytes of a SentencePiece model; see <see cref="Load(string, bool, bool, IReadOnlyDictionary{string, int}?)"/>.</summary>
    /// <param name="model">The bytes of a <c>tokenizer.model</c>.</param>
    /// <param name="sourceName">A name for the model in error messages (its path, usually).</param>
    /// <param name="addBeginningOfSentence">Start every encoding with <c>&lt;s&gt;</c>.</param>
    /// <param name="addEndOfSentence">End every encoding with <c>&lt;/s&gt;</c>.</param>
    /// <param name="specialTokens">Extra tokens matched whole in the text, by text and id; null for none.</param>
    /// <exception cref="InvalidDataException">The bytes are not a SentencePiece model.</exception>
    /// <exception cref="NotSupportedException">The model needs what Microsoft.ML.Tokenizers does not reproduce.</exception>
    public static SentencePieceTokenizer Load(
        ReadOnlySpan<byte> model,
        string sourceName,
        bool addBeginningOfSentence = true,
        bool addEndOfSentence = false,
        IReadOnlyDictionary<string, int>? specialTokens = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(sourceName);
        var info = SentencePieceModelInfo.Read(model, sourceName);
        if (info.ModelType is not (SentencePieceModelType.Bpe or SentencePieceModelType.Unigram))
            throw new NotSupportedException(
                $"{sourceName} is a SentencePiece {info.ModelType} model; Microsoft.ML.Tokenizers supports only BPE and unigram models " +
                "(spm_train --model_type=bpe or unigram).");
        if (!info.HasIdentityNormalizer)
            throw new NotSupportedException(
                $"{sourceName} uses the SentencePiece normaliser '{(info.NormalizerName.Length == 0 ? "(unnamed)" : info.NormalizerName)}'" +
                (info.HasPrecompiledCharsMap ? " with a compiled character map" : "") +
                ". Microsoft.ML.Tokenizers 2.0.1 loads such a model but does not apply the character map (NFKC folding of " +
                "full-width letters, ligatures, ...), so its ids would differ from SentencePiece's on such text. Only models " +
                "trained with --normalization_rule_name=identity (as Llama's tokenizer.model is) are supported. Retrain with " +
                "that option, or use a model that has it.");

        if (info.RemoveExtraWhitespaces)
            throw new NotSupportedException(
                $"{sourceName} removes extra whitespace (SentencePiece's default --remove_extra_whitespaces=true). Microsoft.ML.Tokenizers " +
                "2.0.1 gets this wrong on short texts: a text of one character besides spaces (\"I\", \" x\", \"\\n\") gives no ids at all, " +
                "and a text of spaces only gives the piece \"\u2581\" where SentencePiece gives none. Only models trained with " +
                "--remove_extra_whitespaces=false (as Llama's tokenizer.model is) are supported; retrain with that option.");

        // Microsoft.ML.Tokenizers 2.0.1's unigram model takes the id of byte <0x00> from the last BYTE piece instead of
        // the first, so every byte-fallback id comes out 255 too high (a different piece). Typed NORMAL, the 256 byte
        // pieces give the right offset; the one side effect is that the literal text "<0x41>" then matches a byte piece.
        byte[] bytes = info.ModelType == SentencePieceModelType.Unigram && info.BytePieceCount > 0
            ? SentencePieceModelInfo.WithBytePiecesAsNormal(model, sourceName)
            : model.ToArray();
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            return SentencePieceTokenizer.Create(stream, addBeginningOfSentence, addEndOfSentence, specialTokens);
        }
        catch (Exception e) when (e is Google.Protobuf.InvalidProtocolBufferException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"{sourceName}: Microsoft.ML.Tokenizers could not read the SentencePiece model: {e.Message}", e);
        }
    }

    /// <summary>The model file for <paramref name="path"/>: the file itself, or <see cref="FileName"/> in a folder.</summary>
    private static string ResolveFile(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"SentencePiece model not found: {file}", file);
        return file;
    }
}
