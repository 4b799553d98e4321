using Microsoft.ML.Tokenizers;

namespace Peft.Text;

/// <summary>
/// BERT WordPiece tokenizers from a Hugging Face checkpoint's <c>vocab.txt</c> (one token a line, the line number is the id),
/// through Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/> (basic tokenization, optional lower-casing and accent
/// stripping, <c>##</c> continuation pieces, <c>[CLS]</c>/<c>[SEP]</c> added on encode).
/// </summary>
public static class BertVocabulary
{
    /// <summary>Creates the tokenizer from <paramref name="path"/>: a <c>vocab.txt</c> file, or a folder that holds one.</summary>
    /// <param name="path">The vocabulary file or its folder.</param>
    /// <param name="lowerCase">Lower-case and strip accents before WordPiece (true for <c>*-uncased</c> checkpoints).</param>
    /// <exception cref="FileNotFoundException">No vocab.txt at <paramref name="path"/>.</exception>
    public static BertTokenizer CreateTokenizer(string path, bool lowerCase = true)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string file = Directory.Exists(path) ? Path.Combine(path, "vocab.txt") : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"BERT vocabulary not found: {file}", file);
        using var stream = File.OpenRead(file);
        return BertTokenizer.Create(stream, new BertOptions
        {
            LowerCaseBeforeTokenization = lowerCase,
            RemoveNonSpacingMarks = lowerCase,
        });
    }
}
