using Microsoft.ML.Tokenizers;

namespace Peft.Text.Tests;

/// <summary>
/// Why SentencePieceTokenizerFiles refuses models with remove_extra_whitespaces (SentencePiece's default): bpe-trim.model
/// (identity normaliser, whitespace removal on) checked against SentencePiece's goldens with Microsoft.ML.Tokenizers
/// used directly. If a later Microsoft.ML.Tokenizers fixes this, KnownDifferences fails and the refusal can go.
/// </summary>
public sealed class SentencePieceWhitespaceTests
{
    private static readonly Lazy<SentencePieceTokenizer> Direct = new(() =>
    {
        using var stream = File.OpenRead(SentencePieceGoldens.ModelPath(SentencePieceGoldens.BpeTrim));
        return SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
    });

    /// <summary>The goldens Microsoft.ML.Tokenizers 2.0.1 gets wrong, and what it gives instead.</summary>
    private static readonly Dictionary<string, int[]> Differences = new(StringComparer.Ordinal)
    {
        ["x"] = [],      // SentencePiece: 926 966 ("▁", "x"); one character besides spaces is dropped
        ["\n"] = [],     // SentencePiece: 926 13 ("▁", "<0x0A>")
        ["   "] = [926], // SentencePiece: nothing; Microsoft.ML.Tokenizers keeps the dummy-prefix "▁"
    };

    public static TheoryData<string, int> Cases => SentencePieceGoldens.CaseIndices(SentencePieceGoldens.BpeTrim);

    [Fact]
    public void LoadRefusesTheModel()
    {
        string path = SentencePieceGoldens.ModelPath(SentencePieceGoldens.BpeTrim);
        Assert.True(SentencePieceTokenizerFiles.Inspect(path).RemoveExtraWhitespaces);
        var ex = Assert.Throws<NotSupportedException>(() => SentencePieceTokenizerFiles.Load(path));
        Assert.Contains("--remove_extra_whitespaces=false", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void KnownDifferences(string model, int index)
    {
        var golden = SentencePieceGoldens.For(model).Cases[index];
        var ids = Direct.Value.EncodeToIds(golden.Text);
        if (Differences.TryGetValue(golden.Text, out int[]? actual))
        {
            Assert.NotEqual(golden.Ids, actual);
            Assert.Equal(actual, ids);
        }
        else
        {
            Assert.Equal(golden.Ids, ids);
        }
    }

    [Fact]
    public void OneLetterTextsVanish()
    {
        // spm_encode gives 313 ("▁I") for "I"; Microsoft.ML.Tokenizers 2.0.1 gives nothing, and "Is" is fine.
        Assert.Empty(Direct.Value.EncodeToIds("I"));
        Assert.Empty(Direct.Value.EncodeToIds(" \u00e9 "));
        Assert.NotEmpty(Direct.Value.EncodeToIds("Is"));
    }
}
