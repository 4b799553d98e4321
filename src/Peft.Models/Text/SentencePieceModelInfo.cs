using System.Text;

namespace Peft.Text;

/// <summary>The SentencePiece model algorithm recorded in a <c>tokenizer.model</c> (<c>TrainerSpec.model_type</c>).</summary>
public enum SentencePieceModelType
{
    /// <summary>Not recorded, or a value this reader does not know.</summary>
    Unknown = 0,

    /// <summary>Unigram language model (SentencePiece's default; T5, ALBERT, XLNet, ...).</summary>
    Unigram = 1,

    /// <summary>Byte-pair encoding (Llama, Llama 2, Mistral, Gemma, ...).</summary>
    Bpe = 2,

    /// <summary>Whitespace-delimited words (not supported by Microsoft.ML.Tokenizers).</summary>
    Word = 3,

    /// <summary>Single characters (not supported by Microsoft.ML.Tokenizers).</summary>
    Char = 4,
}

/// <summary>
/// What a SentencePiece <c>tokenizer.model</c> (a serialized <c>sentencepiece.ModelProto</c>) says about itself: the
/// settings that decide whether Microsoft.ML.Tokenizers can reproduce SentencePiece's ids. Read by
/// <see cref="SentencePieceTokenizerFiles.Inspect(string)"/>.
/// </summary>
/// <param name="ModelType">BPE or unigram (or another trainer type).</param>
/// <param name="PieceCount">The number of pieces (the vocabulary size, ids 0 to <c>PieceCount - 1</c>).</param>
/// <param name="BytePieceCount">How many pieces are byte pieces (<c>&lt;0x00&gt;</c> to <c>&lt;0xFF&gt;</c>): 256 with byte fallback.</param>
/// <param name="ByteFallback">Characters outside the vocabulary become their UTF-8 bytes' pieces instead of <c>&lt;unk&gt;</c>.</param>
/// <param name="NormalizerName">The normalisation rule (<c>identity</c>, <c>nmt_nfkc</c>, <c>nfkc</c>, ...; empty when unnamed).</param>
/// <param name="HasPrecompiledCharsMap">The normaliser carries a compiled character map (any rule but <c>identity</c> does).</param>
/// <param name="AddDummyPrefix">A space is prepended to the text, so the first word is spelled like every other.</param>
/// <param name="RemoveExtraWhitespaces">Leading, trailing and repeated spaces are removed before encoding.</param>
/// <param name="UnknownId">The id of <c>&lt;unk&gt;</c>.</param>
/// <param name="BeginningOfSentenceId">The id of <c>&lt;s&gt;</c>, or -1 when the model has none.</param>
/// <param name="EndOfSentenceId">The id of <c>&lt;/s&gt;</c>, or -1 when the model has none.</param>
/// <param name="PaddingId">The id of the padding piece, or -1 when the model has none.</param>
public sealed record SentencePieceModelInfo(
    SentencePieceModelType ModelType,
    int PieceCount,
    int BytePieceCount,
    bool ByteFallback,
    string NormalizerName,
    bool HasPrecompiledCharsMap,
    bool AddDummyPrefix,
    bool RemoveExtraWhitespaces,
    int UnknownId,
    int BeginningOfSentenceId,
    int EndOfSentenceId,
    int PaddingId)
{
    /// <summary>
    /// The normaliser changes no character: rule <c>identity</c> (or unnamed) and no compiled character map. Only such
    /// models are encoded exactly by Microsoft.ML.Tokenizers 2.0.1, which does not apply a compiled map.
    /// </summary>
    public bool HasIdentityNormalizer =>
        !HasPrecompiledCharsMap && (NormalizerName.Length == 0 || NormalizerName == "identity");

    /// <summary>Reads the settings from a serialized <c>ModelProto</c>.</summary>
    /// <param name="model">The bytes of a <c>tokenizer.model</c>.</param>
    /// <param name="source">The file name for error messages.</param>
    /// <exception cref="InvalidDataException">The bytes are not a SentencePiece model (empty, truncated, or another format).</exception>
    internal static SentencePieceModelInfo Read(ReadOnlySpan<byte> model, string source)
    {
        if (model.IsEmpty) throw NotAModel(source, "the file is empty");
        int pieces = 0, bytePieces = 0;
        var type = SentencePieceModelType.Unigram; // the proto default
        bool byteFallback = false, dummyPrefix = true, removeSpaces = true, charsMap = false;
        string normalizer = "";
        int unk = 0, bos = 1, eos = 2, pad = -1;
        bool sawTrainer = false;
        var reader = new ProtoReader(model, source);
        while (reader.Next(out int field, out int wire))
        {
            switch (field, wire)
            {
                case (1, 2):
                {
                    var piece = new ProtoReader(reader.Bytes(), source);
                    pieces++;
                    while (piece.Next(out int f, out int w))
                    {
                        if (f == 3 && w == 0) { if (piece.Varint() == 6) bytePieces++; }
                        else piece.Skip(w);
                    }
                    break;
                }
                case (2, 2):
                {
                    sawTrainer = true;
                    var trainer = new ProtoReader(reader.Bytes(), source);
                    while (trainer.Next(out int f, out int w))
                    {
                        if (w != 0) { trainer.Skip(w); continue; }
                        long v = (long)trainer.Varint();
                        switch (f)
                        {
                            case 3: type = Enum.IsDefined((SentencePieceModelType)v) ? (SentencePieceModelType)v : SentencePieceModelType.Unknown; break;
                            case 35: byteFallback = v != 0; break;
                            case 40: unk = (int)v; break;
                            case 41: bos = (int)v; break;
                            case 42: eos = (int)v; break;
                            case 43: pad = (int)v; break;
                        }
                    }
                    break;
                }
                case (3, 2):
                {
                    var spec = new ProtoReader(reader.Bytes(), source);
                    while (spec.Next(out int f, out int w))
                    {
                        if (f == 1 && w == 2) normalizer = Encoding.UTF8.GetString(spec.Bytes());
                        else if (f == 2 && w == 2) charsMap |= !spec.Bytes().IsEmpty;
                        else if (f == 3 && w == 0) dummyPrefix = spec.Varint() != 0;
                        else if (f == 4 && w == 0) removeSpaces = spec.Varint() != 0;
                        else spec.Skip(w);
                    }
                    break;
                }
                default:
                    reader.Skip(wire);
                    break;
            }
        }
        if (pieces == 0 || !sawTrainer) throw NotAModel(source, pieces == 0 ? "it has no pieces" : "it has no trainer settings");
        return new SentencePieceModelInfo(type, pieces, bytePieces, byteFallback, normalizer, charsMap, dummyPrefix, removeSpaces, unk, bos, eos, pad);
    }

    /// <summary>
    /// Returns a copy of <paramref name="model"/> in which every byte piece (<c>BYTE</c>, type 6) is typed <c>NORMAL</c>
    /// (type 1) instead. Both values are one-byte varints, so only those bytes change.
    /// </summary>
    internal static byte[] WithBytePiecesAsNormal(ReadOnlySpan<byte> model, string source)
    {
        byte[] copy = model.ToArray();
        var reader = new ProtoReader(model, source);
        while (reader.Next(out int field, out int wire))
        {
            if (field != 1 || wire != 2) { reader.Skip(wire); continue; }
            var pieceBytes = reader.Bytes();
            int pieceStart = reader.Position - pieceBytes.Length;
            var piece = new ProtoReader(pieceBytes, source);
            while (piece.Next(out int f, out int w))
            {
                if (f == 3 && w == 0)
                {
                    int at = piece.Position;
                    if (piece.Varint() == 6) copy[pieceStart + at] = 1;
                }
                else piece.Skip(w);
            }
        }
        return copy;
    }

    internal static InvalidDataException NotAModel(string source, string why) => new(
        $"{source} is not a SentencePiece model ({why}). Expected a tokenizer.model file written by spm_train or shipped " +
        "with a Hugging Face checkpoint (a serialized sentencepiece.ModelProto).");

    /// <summary>A minimal protobuf wire-format reader: field headers, varints, length-delimited fields, skipping.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data, string source)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private readonly string _source = source;

        public int Position { get; private set; }

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (Position >= _data.Length) return false;
            ulong key = Varint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field == 0 || wire is 3 or 4 or 6 or 7) throw NotAModel(_source, $"invalid protobuf field header at byte {Position}");
            return true;
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (Position >= _data.Length) throw Truncated();
                byte b = _data[Position++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return value;
            }
            throw NotAModel(_source, $"malformed varint at byte {Position}");
        }

        public ReadOnlySpan<byte> Bytes()
        {
            ulong length = Varint();
            if (length > (ulong)(_data.Length - Position)) throw Truncated();
            var slice = _data.Slice(Position, (int)length);
            Position += (int)length;
            return slice;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: Advance(8); break;
                case 2: Bytes(); break;
                case 5: Advance(4); break;
                default: throw NotAModel(_source, $"unsupported protobuf wire type {wire}");
            }
        }

        private void Advance(int count)
        {
            if (count > _data.Length - Position) throw Truncated();
            Position += count;
        }

        private InvalidDataException Truncated() => NotAModel(_source, "the protobuf data ends in the middle of a field: truncated or corrupt");
    }
}
