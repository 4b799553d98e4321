using Peft.Text;

namespace Peft.Text.Tests;

public sealed class DatasetSplitTests
{
    [Fact]
    public void SplitIsSeededDisjointAndComplete()
    {
        var items = Enumerable.Range(0, 100).ToArray();
        var a = DatasetSplit.TrainValidation(items, 0.2, seed: 7);
        Assert.Equal(20, a.Validation.Count);
        Assert.Equal(80, a.Train.Count);
        Assert.Empty(a.Train.Intersect(a.Validation));
        Assert.Equal(items, a.Train.Concat(a.Validation).Order());
        var again = DatasetSplit.TrainValidation(items, 0.2, seed: 7);
        Assert.Equal(a.Validation, again.Validation);
        Assert.NotEqual(a.Validation, DatasetSplit.TrainValidation(items, 0.2, seed: 8).Validation);
        Assert.NotEqual(items.Take(20), a.Validation); // shuffled, not the head
        Assert.Equal(a.Train.Order(), a.Train); // each part keeps the original order
    }

    [Fact]
    public void SmallFractionsStillHoldOutOneAndNeverAll()
    {
        Assert.Single(DatasetSplit.TrainValidation([1, 2, 3], 0.01, seed: 1).Validation);
        Assert.Single(DatasetSplit.TrainValidation([1, 2], 0.99, seed: 1).Train);
        Assert.Empty(DatasetSplit.TrainValidation([1, 2, 3], 0, seed: 1).Validation);
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.TrainValidation([1], 1.0, seed: 1));
    }
}
