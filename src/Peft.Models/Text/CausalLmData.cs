using Microsoft.ML.Tokenizers;

namespace Peft.Text;

/// <summary>
/// Turns text into causal language-modelling examples: fixed-length blocks of a token stream, and prompt/completion pairs
/// with the loss on the completion only. Labels follow <see cref="TokenizedExample"/>'s convention (already shifted by one).
/// </summary>
public static class CausalLmData
{
    /// <summary>
    /// Cuts <paramref name="tokens"/> into windows of <paramref name="blockSize"/> + 1 tokens starting every
    /// <paramref name="stride"/> tokens; each window gives inputs <c>w[0..blockSize)</c> and labels <c>w[1..blockSize]</c>.
    /// A tail shorter than a full window is dropped, so every example has exactly <paramref name="blockSize"/> tokens.
    /// </summary>
    /// <param name="tokens">The token stream.</param>
    /// <param name="blockSize">Tokens per example (the model's context length or less).</param>
    /// <param name="stride">Distance between window starts; <paramref name="blockSize"/> (no overlap) when null. Smaller values overlap windows.</param>
    public static IReadOnlyList<TokenizedExample> Blocks(IReadOnlyList<int> tokens, int blockSize, int? stride = null)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        int step = stride ?? blockSize;
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1, nameof(stride));
        var result = new List<TokenizedExample>();
        for (int start = 0; start + blockSize + 1 <= tokens.Count; start += step)
        {
            var inputs = new int[blockSize];
            var labels = new int[blockSize];
            for (int i = 0; i < blockSize; i++)
            {
                inputs[i] = tokens[start + i];
                labels[i] = tokens[start + i + 1];
            }
            result.Add(new TokenizedExample(inputs, labels));
        }
        return result;
    }

    /// <summary>
    /// Tokenizes <paramref name="documents"/> (each followed by <paramref name="separatorId"/> when given, e.g. GPT-2's
    /// <c>&lt;|endoftext|&gt;</c>), concatenates them, and cuts the stream with <see cref="Blocks"/>.
    /// </summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="documents">Plain-text documents (one corpus is one document).</param>
    /// <param name="blockSize">Tokens per example.</param>
    /// <param name="stride">Distance between window starts; <paramref name="blockSize"/> when null.</param>
    /// <param name="separatorId">An id appended after each document, or null for none.</param>
    public static IReadOnlyList<TokenizedExample> BlocksFromText(Tokenizer tokenizer, IEnumerable<string> documents, int blockSize, int? stride = null, int? separatorId = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(documents);
        var stream = new List<int>();
        foreach (string document in documents)
        {
            ArgumentNullException.ThrowIfNull(document, nameof(documents));
            stream.AddRange(tokenizer.EncodeToIds(document));
            if (separatorId is int sep) stream.Add(sep);
        }
        return Blocks(stream, blockSize, stride);
    }

    /// <summary>
    /// Encodes a prompt/completion pair as one causal-LM example: the sequence is prompt ids, completion ids and
    /// <paramref name="endOfTextId"/> (when given); inputs are the sequence without its last id and labels without its first.
    /// With <paramref name="completionOnlyLoss"/>, labels that are prompt tokens are <see cref="TokenizedExample.IgnoreIndex"/>.
    /// </summary>
    /// <remarks>
    /// When the sequence is longer than <paramref name="maxLength"/> + 1 ids, the completion keeps its first ids (at most
    /// <paramref name="maxLength"/>) and the prompt keeps its last ids (the ones next to the completion), so at least one
    /// completion id is always a target.
    /// </remarks>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="example">The prompt and completion.</param>
    /// <param name="maxLength">The most input ids an example may have.</param>
    /// <param name="endOfTextId">An id appended after the completion (so the model learns to stop), or null.</param>
    /// <param name="completionOnlyLoss">Whether prompt tokens are excluded from the loss (true) or trained too (false).</param>
    /// <exception cref="ArgumentException">The completion encodes to no ids and no <paramref name="endOfTextId"/> is given.</exception>
    public static TokenizedExample PromptCompletion(Tokenizer tokenizer, PromptCompletionExample example, int maxLength, int? endOfTextId = null, bool completionOnlyLoss = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(example);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        var prompt = tokenizer.EncodeToIds(example.Prompt);
        var completion = new List<int>(tokenizer.EncodeToIds(example.Completion));
        if (endOfTextId is int eos) completion.Add(eos);
        if (completion.Count == 0)
            throw new ArgumentException("The completion encodes to no tokens and no end-of-text id is given: nothing to train on.", nameof(example));
        if (prompt.Count == 0)
            throw new ArgumentException("The prompt encodes to no tokens: the first completion token would have no input to predict it from.", nameof(example));

        int capacity = maxLength + 1;
        int keepCompletion = Math.Min(completion.Count, capacity - 1);
        int keepPrompt = Math.Min(prompt.Count, capacity - keepCompletion);
        var sequence = new List<int>(keepPrompt + keepCompletion);
        for (int i = prompt.Count - keepPrompt; i < prompt.Count; i++) sequence.Add(prompt[i]);
        for (int i = 0; i < keepCompletion; i++) sequence.Add(completion[i]);

        int length = sequence.Count - 1;
        var inputs = new int[length];
        var labels = new int[length];
        for (int i = 0; i < length; i++)
        {
            inputs[i] = sequence[i];
            bool targetIsPrompt = i + 1 < keepPrompt;
            labels[i] = completionOnlyLoss && targetIsPrompt ? TokenizedExample.IgnoreIndex : sequence[i + 1];
        }
        return new TokenizedExample(inputs, labels);
    }

    /// <summary>Encodes a text/label example for sequence classification, keeping at most <paramref name="maxLength"/> ids.</summary>
    /// <param name="tokenizer">The tokenizer (a BERT tokenizer adds its own [CLS]/[SEP]).</param>
    /// <param name="example">The text and its class.</param>
    /// <param name="maxLength">The most ids kept (the first ones).</param>
    public static TokenizedExample Classification(Tokenizer tokenizer, TextLabelExample example, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(example);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        var ids = tokenizer.EncodeToIds(example.Text);
        return new TokenizedExample(ids.Take(maxLength).ToArray(), ClassLabel: example.Label);
    }
}
