using Peft.Text;

namespace Peft.Text.Tests;

[Collection(Gpt2Collection.Name)]
public sealed class Gpt2TokenizerTests(Gpt2Fixture gpt2)
{
    private static readonly int[] HelloIds = [15496, 995, 11, 428, 318, 257, 1332, 13];

    public static TheoryData<string> RoundTripTexts => new()
    {
        "Hello world, this is a test.",
        "  leading spaces and\ttabs\nand newlines\r\n",
        "Ünïcödé: naïve café, Straße, 東京, Ελληνικά, emoji 🙂👍🏽.",
        "numbers 1234567890 and symbols <|>{}[]~`",
        "It's what we've done; they'll see I'm right.",
    };

    [Fact]
    public void EncodesGpt2Ids()
    {
        Assert.Equal(HelloIds, gpt2.Tokenizer.EncodeToIds("Hello world, this is a test."));
    }

    [Theory]
    [MemberData(nameof(RoundTripTexts))]
    public void DecodeInvertsEncode(string text)
    {
        var ids = gpt2.Tokenizer.EncodeToIds(text);
        Assert.NotEmpty(ids);
        Assert.Equal(text, gpt2.Tokenizer.Decode(ids));
    }

    [Fact]
    public void RunsOfSpacesUseGpt2TokensOnly()
    {
        // HF GPT-2: "a  b" -> a, Ġ, Ġb (CodeGenTokenizer would use its own two-space token 50286 here).
        Assert.Equal([64, 220, 275], gpt2.Tokenizer.EncodeToIds("a  b"));
        Assert.All(gpt2.Tokenizer.EncodeToIds("x        y\n\n\n   z"), id => Assert.InRange(id, 0, Gpt2TokenizerFiles.EndOfTextId));
    }

    [Fact]
    public void EndOfTextIsOneSpecialToken()
    {
        Assert.Equal([15496, Gpt2TokenizerFiles.EndOfTextId], gpt2.Tokenizer.EncodeToIds("Hello" + Gpt2TokenizerFiles.EndOfTextToken));
    }

    [Fact]
    public void EndOfTextDecodesToItsToken()
    {
        Assert.Equal(Gpt2TokenizerFiles.EndOfTextToken, gpt2.Tokenizer.Decode([Gpt2TokenizerFiles.EndOfTextId]));
    }

    [Fact]
    public void RanksFileHasOneLinePerOrdinaryToken()
    {
        string path = Path.Combine(Path.GetTempPath(), "peft-gpt2-" + Guid.NewGuid().ToString("N") + ".tiktoken");
        try
        {
            gpt2.Files.WriteTiktokenRanks(path);
            var lines = File.ReadAllLines(path);
            Assert.Equal(50256, lines.Length);
            Assert.Equal("IQ== 0", lines[0]); // "!"
            Assert.Equal("SGVsbG8= 15496", lines[15496]); // "Hello"
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void FromDirectoryNamesWhatIsMissing()
    {
        string dir = Directory.CreateTempSubdirectory("peft-gpt2-empty").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "vocab.json"), "{}");
            var ex = Assert.Throws<FileNotFoundException>(() => Gpt2TokenizerFiles.FromDirectory(dir));
            Assert.Contains("merges.txt", ex.Message);
            Assert.Contains(dir, ex.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void FromDirectoryPrefersHuggingFaceNames()
    {
        string dir = Directory.CreateTempSubdirectory("peft-gpt2-hf").FullName;
        try
        {
            File.Copy(gpt2.Files.VocabPath, Path.Combine(dir, "vocab.json"));
            File.Copy(gpt2.Files.MergesPath, Path.Combine(dir, "merges.txt"));
            var files = Gpt2TokenizerFiles.FromDirectory(dir);
            Assert.EndsWith("merges.txt", files.MergesPath);
            Assert.Equal(HelloIds, files.CreateTokenizer().EncodeToIds("Hello world, this is a test."));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
