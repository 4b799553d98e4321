using Microsoft.ML.Tokenizers;

namespace Peft.Text.Tests;

public sealed class SentencePieceTokenizerTests
{
    private static readonly Lazy<SentencePieceTokenizer> LlamaBpe = new(() => Load(SentencePieceGoldens.LlamaBpe));
    private static readonly Lazy<SentencePieceTokenizer> Unigram = new(() => Load(SentencePieceGoldens.Unigram));

    public static TheoryData<string, int> LlamaBpeCases => SentencePieceGoldens.CaseIndices(SentencePieceGoldens.LlamaBpe);

    public static TheoryData<string, int> UnigramCases => SentencePieceGoldens.CaseIndices(SentencePieceGoldens.Unigram);

    private static SentencePieceTokenizer Load(string model) =>
        SentencePieceTokenizerFiles.Load(SentencePieceGoldens.ModelPath(model), addBeginningOfSentence: false);

    private static SentencePieceTokenizer Tokenizer(string model) =>
        model == SentencePieceGoldens.LlamaBpe ? LlamaBpe.Value : Unigram.Value;

    [Theory]
    [MemberData(nameof(LlamaBpeCases))]
    [MemberData(nameof(UnigramCases))]
    public void IdsEqualSentencePieces(string model, int index)
    {
        var golden = SentencePieceGoldens.For(model).Cases[index];
        Assert.Equal(golden.Ids, Tokenizer(model).EncodeToIds(golden.Text));
    }

    [Theory]
    [MemberData(nameof(LlamaBpeCases))]
    public void DecodeInvertsEncode(string model, int index)
    {
        // Identity normaliser + byte fallback: SentencePiece's encoding is lossless, so decode(encode(x)) == x.
        var golden = SentencePieceGoldens.For(model).Cases[index];
        Assert.Equal(golden.Text, golden.Decoded);
        Assert.Equal(golden.Text, Tokenizer(model).Decode(Tokenizer(model).EncodeToIds(golden.Text)));
    }

    [Theory]
    [MemberData(nameof(UnigramCases))]
    public void UnigramDecodeSpellsBytePiecesOut(string model, int index)
    {
        // Known difference (docs/text.md): for a unigram model, Load types the byte pieces NORMAL to get SentencePiece's
        // ids from Microsoft.ML.Tokenizers 2.0.1, so Decode writes a byte piece as its text "<0xNN>" instead of the byte.
        // Texts that need no byte piece round-trip exactly.
        var golden = SentencePieceGoldens.For(model).Cases[index];
        Assert.Equal(golden.Text, golden.Decoded);
        string decoded = Tokenizer(model).Decode(golden.Ids);
        if (!golden.Pieces.Any(IsBytePiece))
        {
            Assert.Equal(golden.Text, decoded);
            return;
        }
        string spelled = string.Concat(golden.Pieces).Replace('\u2581', ' ');
        Assert.Equal(spelled.StartsWith(' ') ? spelled[1..] : spelled, decoded);
    }

    [Fact]
    public void UnigramMatchesLiteralBytePieceText()
    {
        // The other side of typing byte pieces NORMAL: the literal text "<0x41>" becomes one piece (id 68, "A"'s byte),
        // where SentencePiece spells it out (spm_encode: 266 546 63 797 546 991 798 65). The BPE model is unaffected.
        Assert.Equal([266, 546, 68], Unigram.Value.EncodeToIds("x<0x41>"));
        Assert.Equal([926, 966, 63, 986, 966, 997, 987, 65], LlamaBpe.Value.EncodeToIds("x<0x41>"));
    }

    [Fact]
    public void BosAndEosFollowTheLoadFlags()
    {
        var hello = SentencePieceGoldens.For(SentencePieceGoldens.LlamaBpe).Cases[1];
        var llama = SentencePieceTokenizerFiles.Load(SentencePieceGoldens.ModelPath(SentencePieceGoldens.LlamaBpe));
        Assert.Equal(1, llama.BeginningOfSentenceId);
        Assert.Equal(2, llama.EndOfSentenceId);
        Assert.Equal([1, .. hello.Ids], llama.EncodeToIds(hello.Text));
        // Known difference: SentencePiece gives [1] for "" with add_bos (and [1, 2] with add_eos too); Microsoft.ML.Tokenizers
        // 2.0.1 returns no ids at all for empty text.
        Assert.Empty(llama.EncodeToIds(""));
        Assert.Equal(hello.Ids, llama.EncodeToIds(hello.Text, addBeginningOfSentence: false, addEndOfSentence: false));

        var both = SentencePieceTokenizerFiles.Load(SentencePieceGoldens.ModelPath(SentencePieceGoldens.LlamaBpe), addBeginningOfSentence: true, addEndOfSentence: true);
        Assert.Equal([1, .. hello.Ids, 2], both.EncodeToIds(hello.Text));
        Assert.Equal(hello.Text, both.Decode(both.EncodeToIds(hello.Text)));
    }

    [Fact]
    public void MarkersInPlainTextAreNotSpecial()
    {
        // "<s>" typed in the text is text, as in SentencePiece (golden case "<s> literal markers </s> <unk>").
        var golden = SentencePieceGoldens.For(SentencePieceGoldens.LlamaBpe).Cases.Single(c => c.Text.StartsWith("<s>", StringComparison.Ordinal));
        Assert.DoesNotContain(1, golden.Ids);
        Assert.Equal(golden.Ids, LlamaBpe.Value.EncodeToIds(golden.Text));
    }

    [Fact]
    public void ExtraSpecialTokensAreMatchedWhole()
    {
        var tokenizer = SentencePieceTokenizerFiles.Load(
            SentencePieceGoldens.ModelPath(SentencePieceGoldens.LlamaBpe), addBeginningOfSentence: false,
            specialTokens: new Dictionary<string, int> { ["<|sep|>"] = 1000 });
        var ids = tokenizer.EncodeToIds("a<|sep|>b");
        Assert.Contains(1000, ids);
        // Decode(ids) leaves special tokens out, as it does <s> and </s>; Decode(ids, considerSpecialTokens: true) keeps them.
        Assert.Equal("ab", tokenizer.Decode(ids));
        Assert.Equal("a<|sep|>b", tokenizer.Decode(ids, considerSpecialTokens: true));
    }

    [Theory]
    [InlineData(SentencePieceGoldens.LlamaBpe, SentencePieceModelType.Bpe)]
    [InlineData(SentencePieceGoldens.Unigram, SentencePieceModelType.Unigram)]
    public void InspectReadsTheTrainerSettings(string model, SentencePieceModelType type)
    {
        var info = SentencePieceTokenizerFiles.Inspect(SentencePieceGoldens.ModelPath(model));
        Assert.Equal(type, info.ModelType);
        Assert.Equal(1000, info.PieceCount);
        Assert.Equal(256, info.BytePieceCount);
        Assert.True(info.ByteFallback);
        Assert.Equal("identity", info.NormalizerName);
        Assert.True(info.HasIdentityNormalizer);
        Assert.True(info.AddDummyPrefix);
        Assert.False(info.RemoveExtraWhitespaces);
        Assert.Equal((0, 1, 2, -1), (info.UnknownId, info.BeginningOfSentenceId, info.EndOfSentenceId, info.PaddingId));
    }

    [Fact]
    public void LoadTakesTheFolderToo()
    {
        string dir = Directory.CreateTempSubdirectory("peft-spm").FullName;
        try
        {
            File.Copy(SentencePieceGoldens.ModelPath(SentencePieceGoldens.LlamaBpe), Path.Combine(dir, SentencePieceTokenizerFiles.FileName));
            var golden = SentencePieceGoldens.For(SentencePieceGoldens.LlamaBpe).Cases[0];
            Assert.Equal(golden.Ids, SentencePieceTokenizerFiles.Load(dir, addBeginningOfSentence: false).EncodeToIds(golden.Text));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static bool IsBytePiece(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece.EndsWith('>');

    [Theory]
    [MemberData(nameof(LlamaBpeCases))]
    public void PiecesEqualSentencePieces(string model, int index)
    {
        var golden = SentencePieceGoldens.For(model).Cases[index];
        var pieces = Tokenizer(model).EncodeToTokens(golden.Text, out _).Select(t => t.Value);
        Assert.Equal(golden.Pieces, pieces);
    }
}
