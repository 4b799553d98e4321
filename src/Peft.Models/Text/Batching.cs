using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Text;

/// <summary>Which end of a sequence padding goes on.</summary>
public enum PaddingSide
{
    /// <summary>Pad after the tokens (training, encoders).</summary>
    Right,

    /// <summary>Pad before the tokens (batched generation with decoders, so every row ends at its last real token).</summary>
    Left,
}

/// <summary>How <see cref="Batcher"/> pads a batch.</summary>
public sealed record PaddingOptions
{
    /// <summary>The id written into padded input positions (e.g. GPT-2's 50256, BERT's 0).</summary>
    public int PadId { get; init; }

    /// <summary>Which side padding goes on.</summary>
    public PaddingSide Side { get; init; } = PaddingSide.Right;

    /// <summary>
    /// When set, every batch is this long: shorter rows are padded, longer rows are an error. When null, a batch is as long
    /// as its longest row.
    /// </summary>
    public int? Length { get; init; }

    /// <summary>The device the tensors are created on; the CPU when null.</summary>
    public Device? Device { get; init; }
}

/// <summary>
/// A padded batch as int64 TorchSharp tensors of shape [batch, length]. Dispose it to free the tensors.
/// </summary>
public sealed class TokenBatch : IDisposable
{
    internal TokenBatch(Tensor inputIds, Tensor attentionMask, Tensor positionIds, Tensor? labels, Tensor? classLabels)
    {
        InputIds = inputIds;
        AttentionMask = attentionMask;
        PositionIds = positionIds;
        Labels = labels;
        ClassLabels = classLabels;
    }

    /// <summary>Token ids, padded with <see cref="PaddingOptions.PadId"/>.</summary>
    public Tensor InputIds { get; }

    /// <summary>1 for real tokens, 0 for padding.</summary>
    public Tensor AttentionMask { get; }

    /// <summary>Each real token's position counted from the row's first real token (0 on padding), so left padding does not shift positions.</summary>
    public Tensor PositionIds { get; }

    /// <summary>Per-token labels padded with -100, when the examples have token labels; else null.</summary>
    public Tensor? Labels { get; }

    /// <summary>Class labels of shape [batch], when the examples have class labels; else null.</summary>
    public Tensor? ClassLabels { get; }

    /// <inheritdoc />
    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask.Dispose();
        PositionIds.Dispose();
        Labels?.Dispose();
        ClassLabels?.Dispose();
    }
}

/// <summary>Pads tokenized examples into <see cref="TokenBatch"/>es.</summary>
public static class Batcher
{
    /// <summary>Pads <paramref name="examples"/> into one batch.</summary>
    /// <param name="examples">One or more examples; all with token labels, all with class labels, or all with neither.</param>
    /// <param name="options">Pad id, side, fixed length and device.</param>
    /// <exception cref="ArgumentException">The examples mix label kinds, token labels differ in length from their inputs, or a row is longer than <see cref="PaddingOptions.Length"/>.</exception>
    public static TokenBatch Collate(IReadOnlyList<TokenizedExample> examples, PaddingOptions options)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(options);
        if (examples.Count == 0) throw new ArgumentException("A batch needs at least one example.", nameof(examples));
        bool tokenLabels = examples[0].TokenLabels is not null;
        bool classLabels = examples[0].ClassLabel is not null;
        int longest = 0;
        for (int r = 0; r < examples.Count; r++)
        {
            var e = examples[r] ?? throw new ArgumentException($"Example {r} is null.", nameof(examples));
            if ((e.TokenLabels is not null) != tokenLabels || (e.ClassLabel is not null) != classLabels)
                throw new ArgumentException($"Example {r} has different kinds of labels from example 0; a batch cannot mix them.", nameof(examples));
            if (e.TokenLabels is not null && e.TokenLabels.Count != e.InputIds.Count)
                throw new ArgumentException($"Example {r} has {e.InputIds.Count} input ids but {e.TokenLabels.Count} token labels.", nameof(examples));
            longest = Math.Max(longest, e.InputIds.Count);
        }
        int length = options.Length ?? longest;
        if (longest > length)
            throw new ArgumentException($"An example has {longest} tokens, more than the fixed batch length {length}; truncate it first.", nameof(examples));

        int batch = examples.Count;
        var ids = new long[batch * length];
        var mask = new long[batch * length];
        var positions = new long[batch * length];
        var labels = tokenLabels ? new long[batch * length] : null;
        Array.Fill(ids, options.PadId);
        if (labels is not null) Array.Fill(labels, TokenizedExample.IgnoreIndex);
        for (int r = 0; r < batch; r++)
        {
            var e = examples[r];
            int n = e.InputIds.Count;
            int offset = r * length + (options.Side == PaddingSide.Left ? length - n : 0);
            for (int i = 0; i < n; i++)
            {
                ids[offset + i] = e.InputIds[i];
                mask[offset + i] = 1;
                positions[offset + i] = i;
                if (labels is not null) labels[offset + i] = e.TokenLabels![i];
            }
        }

        long[] shape = [batch, length];
        Device device = options.Device ?? CPU;
        return new TokenBatch(
            torch.tensor(ids, shape, ScalarType.Int64, device),
            torch.tensor(mask, shape, ScalarType.Int64, device),
            torch.tensor(positions, shape, ScalarType.Int64, device),
            labels is null ? null : torch.tensor(labels, shape, ScalarType.Int64, device),
            classLabels ? torch.tensor(examples.Select(e => (long)e.ClassLabel!.Value).ToArray(), [batch], ScalarType.Int64, device) : null);
    }

    /// <summary>
    /// Yields padded batches of <paramref name="batchSize"/> examples (the last may be smaller), in order or in a seeded
    /// shuffled order. The caller disposes each batch.
    /// </summary>
    /// <param name="examples">The dataset.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="options">How to pad.</param>
    /// <param name="shuffleSeed">Shuffles the order with this seed when given (the same seed gives the same order).</param>
    public static IEnumerable<TokenBatch> Batches(IReadOnlyList<TokenizedExample> examples, int batchSize, PaddingOptions options, int? shuffleSeed = null)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        int[] order = Enumerable.Range(0, examples.Count).ToArray();
        if (shuffleSeed is int seed) DatasetSplit.Shuffle(order, seed);
        return Iterate();

        IEnumerable<TokenBatch> Iterate()
        {
            for (int start = 0; start < order.Length; start += batchSize)
            {
                var rows = new TokenizedExample[Math.Min(batchSize, order.Length - start)];
                for (int i = 0; i < rows.Length; i++) rows[i] = examples[order[start + i]];
                yield return Collate(rows, options);
            }
        }
    }
}
