using System.Text;

namespace Peft.Text.Tests;

public sealed class SentencePieceErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("peft-spm-errors").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] LlamaBytes => File.ReadAllBytes(SentencePieceGoldens.ModelPath(SentencePieceGoldens.LlamaBpe));

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>
    /// The model with a second NormalizerSpec (ModelProto field 3) appended: protobuf merges repeated message fields,
    /// so the later name (and character map, if given) win, as in a model trained with that rule.
    /// </summary>
    private static byte[] WithNormalizer(string name, byte[]? charsMap = null)
    {
        var spec = new List<byte> { 0x0A, (byte)name.Length };
        spec.AddRange(Encoding.ASCII.GetBytes(name));
        if (charsMap is not null) { spec.Add(0x12); spec.Add((byte)charsMap.Length); spec.AddRange(charsMap); }
        return [.. LlamaBytes, 0x1A, (byte)spec.Count, .. spec];
    }

    [Fact]
    public void MissingFileNamesThePath()
    {
        string path = Path.Combine(_dir, "nope", "tokenizer.model");
        var ex = Assert.Throws<FileNotFoundException>(() => SentencePieceTokenizerFiles.Load(path));
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void FolderWithoutModelNamesTheExpectedFile()
    {
        var ex = Assert.Throws<FileNotFoundException>(() => SentencePieceTokenizerFiles.Load(_dir));
        Assert.Contains(Path.Combine(_dir, "tokenizer.model"), ex.Message);
    }

    [Theory]
    [InlineData("empty")]
    [InlineData("text")]
    [InlineData("json")]
    [InlineData("truncated")]
    [InlineData("tiktoken")]
    public void NotAModelIsInvalidData(string kind)
    {
        byte[] bytes = kind switch
        {
            "empty" => [],
            "text" => Encoding.UTF8.GetBytes("this is not a model\n"),
            "json" => Encoding.UTF8.GetBytes("{\"model\": {\"type\": \"BPE\"}}"),
            // Llama 3 ships a tiktoken ranks file under the name tokenizer.model.
            "tiktoken" => Encoding.UTF8.GetBytes(string.Concat(Enumerable.Range(0, 300).Select(i => $"{Convert.ToBase64String(BitConverter.GetBytes(i * 7919))} {i}\n"))),
            _ => LlamaBytes[..7000],
        };
        string path = Write("tokenizer.model", bytes);
        var ex = Assert.Throws<InvalidDataException>(() => SentencePieceTokenizerFiles.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains("not a SentencePiece model", ex.Message);
    }

    [Fact]
    public void NmtNfkcNormalizerIsRefusedWithTheFix()
    {
        string path = Write("nfkc.model", WithNormalizer("nmt_nfkc", [1, 2, 3, 4]));
        Assert.Equal("nmt_nfkc", SentencePieceTokenizerFiles.Inspect(path).NormalizerName);
        var ex = Assert.Throws<NotSupportedException>(() => SentencePieceTokenizerFiles.Load(path));
        Assert.Contains("'nmt_nfkc'", ex.Message);
        Assert.Contains("--normalization_rule_name=identity", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void CharacterMapWithoutANameIsRefused()
    {
        string path = Write("charsmap.model", WithNormalizer("identity", [9, 9]));
        Assert.False(SentencePieceTokenizerFiles.Inspect(path).HasIdentityNormalizer);
        Assert.Throws<NotSupportedException>(() => SentencePieceTokenizerFiles.Load(path));
    }
}
