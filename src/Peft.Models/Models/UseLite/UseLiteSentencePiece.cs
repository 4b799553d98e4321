using System.Buffers.Binary;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Peft.Models.UseLite;

/// <summary>
/// Builds a Microsoft.ML.Tokenizers <see cref="SentencePieceTokenizer"/> (its SentencePiece unigram model) from the
/// Universal Sentence Encoder lite vocabulary (<c>vocab.json</c>), by writing the SentencePiece <c>ModelProto</c>
/// that the JSON was exported from: the pieces with their scores, id 0 as the unknown piece, ids 1 to 5 as control pieces,
/// unigram model type, and an identity normaliser that adds the leading <c>▁</c> and escapes spaces.
/// </summary>
/// <remarks>
/// The model graph was fed ids from the JavaScript tokenizer (<see cref="UseLiteTokenizer"/>), which differs from
/// SentencePiece for characters that start no piece: the JavaScript scores such a character 0, SentencePiece scores it
/// below every piece. On text whose characters all occur in the vocabulary the two agree (the tests check this on the
/// reference sentences and more); <see cref="UseLiteModel"/> uses <see cref="UseLiteTokenizer"/> so the embeddings match
/// the original for every input. Text is NFKC-normalised before it reaches this tokenizer
/// (<see cref="EncodeToIds(SentencePieceTokenizer, string)"/>), because Microsoft.ML.Tokenizers does not apply the
/// <c>nmt_nfkc</c> rule itself.
/// </remarks>
public static class UseLiteSentencePiece
{
    /// <summary>Creates the tokenizer from the pieces and scores of <paramref name="tokenizer"/>.</summary>
    /// <param name="tokenizer">A loaded USE-lite tokenizer (for its vocabulary).</param>
    public static SentencePieceTokenizer Create(UseLiteTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        using var stream = new MemoryStream(ModelProto(tokenizer.Pieces));
        return SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
    }

    /// <summary>Ids of <paramref name="text"/> after NFKC, without begin/end-of-sentence ids.</summary>
    /// <param name="sentencePiece">A tokenizer from <see cref="Create"/>.</param>
    /// <param name="text">Raw text.</param>
    public static int[] EncodeToIds(SentencePieceTokenizer sentencePiece, string text)
    {
        ArgumentNullException.ThrowIfNull(sentencePiece);
        ArgumentNullException.ThrowIfNull(text);
        return sentencePiece.EncodeToIds(text.Normalize(NormalizationForm.FormKC), addBeginningOfSentence: false, addEndOfSentence: false).ToArray();
    }

    /// <summary>The serialized SentencePiece <c>ModelProto</c> for these pieces (unigram, identity normaliser).</summary>
    /// <param name="pieces">Pieces and scores in id order; id 0 is the unknown piece, ids 1 to 5 control pieces.</param>
    public static byte[] ModelProto(IReadOnlyList<(string Piece, double Score)> pieces)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        // "”5" occurs three times (ids 230, 238, 4464). The JavaScript trie keeps the last; Microsoft.ML.Tokenizers rejects
        // a repeated piece, so earlier copies are written as unused pieces with a placeholder text that no input contains.
        var lastId = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < pieces.Count; id++) lastId[pieces[id].Piece] = id;

        using var model = new MemoryStream();
        for (int id = 0; id < pieces.Count; id++)
        {
            bool shadowed = lastId[pieces[id].Piece] != id;
            using var piece = new MemoryStream();
            WriteBytes(piece, 1, Encoding.UTF8.GetBytes(shadowed ? $"<unused-duplicate-{id}>" : pieces[id].Piece));
            WriteFloat(piece, 2, (float)pieces[id].Score);
            // SentencePiece.Type: NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5. The pieces exported without a
            // log-probability (null or non-negative scores: ":", "://", ":30", ...) are user-defined symbols.
            ulong type = shadowed ? 5UL
                : id == 0 ? 2UL
                : id < UseLiteTokenizer.ReservedSymbolCount ? 3UL
                : pieces[id].Score >= 0 ? 4UL
                : 1UL;
            WriteVarint(piece, 3, type);
            WriteBytes(model, 1, piece.ToArray());
        }

        using var trainer = new MemoryStream();
        WriteVarint(trainer, 3, 1);                          // model_type = UNIGRAM
        WriteVarint(trainer, 40, 0);                         // unk_id
        WriteVarint(trainer, 41, 1);                         // bos_id
        WriteVarint(trainer, 42, 2);                         // eos_id
        WriteVarint(trainer, 43, unchecked((ulong)-1L));     // pad_id = -1 (none)
        WriteBytes(model, 2, trainer.ToArray());

        using var normalizer = new MemoryStream();
        WriteBytes(normalizer, 1, Encoding.UTF8.GetBytes("identity"));
        WriteVarint(normalizer, 3, 1);                       // add_dummy_prefix
        WriteVarint(normalizer, 4, 0);                       // remove_extra_whitespaces: the JavaScript keeps every space
        WriteVarint(normalizer, 5, 1);                       // escape_whitespaces
        WriteBytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    private static void WriteTag(Stream s, int field, int wireType) => WriteRawVarint(s, (ulong)((field << 3) | wireType));

    private static void WriteVarint(Stream s, int field, ulong value)
    {
        WriteTag(s, field, 0);
        WriteRawVarint(s, value);
    }

    private static void WriteFloat(Stream s, int field, float value)
    {
        WriteTag(s, field, 5);
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteSingleLittleEndian(bytes, value);
        s.Write(bytes);
    }

    private static void WriteBytes(Stream s, int field, byte[] value)
    {
        WriteTag(s, field, 2);
        WriteRawVarint(s, (ulong)value.Length);
        s.Write(value);
    }

    private static void WriteRawVarint(Stream s, ulong value)
    {
        while (value >= 0x80)
        {
            s.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        s.WriteByte((byte)value);
    }
}
