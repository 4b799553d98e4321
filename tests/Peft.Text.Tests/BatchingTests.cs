using Peft.Text;
using TorchSharp;

namespace Peft.Text.Tests;

public sealed class BatchingTests
{
    private static long[] Row(torch.Tensor t, int r) => t[r].data<long>().ToArray();

    private static readonly TokenizedExample[] Lm =
    [
        new([1, 2, 3], [2, 3, 4]),
        new([5], [6]),
    ];

    [Fact]
    public void RightPaddingMasksAndPadsLabelsWithIgnoreIndex()
    {
        using var batch = Batcher.Collate(Lm, new PaddingOptions { PadId = 0 });
        Assert.Equal([2L, 3L], batch.InputIds.shape);
        Assert.Equal(torch.ScalarType.Int64, batch.InputIds.dtype);
        Assert.Equal([1L, 2, 3], Row(batch.InputIds, 0));
        Assert.Equal([5L, 0, 0], Row(batch.InputIds, 1));
        Assert.Equal([1L, 0, 0], Row(batch.AttentionMask, 1));
        Assert.Equal([6L, -100, -100], Row(batch.Labels!, 1));
        Assert.Equal([0L, 0, 0], Row(batch.PositionIds, 1));
        Assert.Null(batch.ClassLabels);
    }

    [Fact]
    public void LeftPaddingPutsTokensAtTheEndAndKeepsPositionsFromZero()
    {
        using var batch = Batcher.Collate(Lm, new PaddingOptions { PadId = 50256, Side = PaddingSide.Left, Length = 4 });
        Assert.Equal([2L, 4L], batch.InputIds.shape);
        Assert.Equal([50256L, 1, 2, 3], Row(batch.InputIds, 0));
        Assert.Equal([50256L, 50256, 50256, 5], Row(batch.InputIds, 1));
        Assert.Equal([0L, 0, 0, 1], Row(batch.AttentionMask, 1));
        Assert.Equal([0L, 0, 1, 2], Row(batch.PositionIds, 0));
        Assert.Equal([-100L, -100, -100, 6], Row(batch.Labels!, 1));
    }

    [Fact]
    public void ClassLabelsBecomeAVector()
    {
        using var batch = Batcher.Collate([new([7, 8], ClassLabel: 1), new([9], ClassLabel: 0)], new PaddingOptions());
        Assert.Null(batch.Labels);
        Assert.Equal([1L, 0], batch.ClassLabels!.data<long>().ToArray());
    }

    [Fact]
    public void MixedLabelKindsAndOverlongRowsAreErrors()
    {
        Assert.Throws<ArgumentException>(() => Batcher.Collate([new([1], [2]), new([1], ClassLabel: 0)], new PaddingOptions()));
        var ex = Assert.Throws<ArgumentException>(() => Batcher.Collate(Lm, new PaddingOptions { Length = 2 }));
        Assert.Contains("3 tokens", ex.Message);
        Assert.Throws<ArgumentException>(() => Batcher.Collate([new([1, 2], [2])], new PaddingOptions()));
    }

    [Fact]
    public void BatchesCoverEveryExampleOnceAndShuffleIsSeeded()
    {
        var data = Enumerable.Range(0, 10).Select(i => new TokenizedExample([i], ClassLabel: i)).ToArray();
        List<long> Order(int? seed)
        {
            var seen = new List<long>();
            foreach (var b in Batcher.Batches(data, 3, new PaddingOptions(), seed))
                using (b) seen.AddRange(b.ClassLabels!.data<long>().ToArray());
            return seen;
        }
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), Order(null));
        var shuffled = Order(42);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), shuffled.Order());
        Assert.NotEqual(Order(null), shuffled);
        Assert.Equal(shuffled, Order(42));
        Assert.NotEqual(shuffled, Order(43));
    }
}
