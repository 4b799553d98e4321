using Peft.Runtime.Tests.Training;
using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Id3;

public sealed class Id3Tests : IDisposable
{
    private static readonly string[] s_weights = ["fc1.weight", "fc2.weight"];
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-id3-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    [Fact]
    public void TheTargetCountIsTheCeilingOfBkOverTuMonotoneAndEndsAtTheBudget()
    {
        // B = 10, T_u = 4: 10/4 = 2.5 -> 3, 5, 7.5 -> 8, 10.
        Assert.Equal(new long[] { 0, 3, 5, 8, 10, 10 }, Enumerable.Range(0, 6).Select(k => Id3Schedule.TargetCount(10, k, 4)));
        for (int tu = 1; tu <= 7; tu++)
        {
            var counts = Enumerable.Range(0, tu + 1).Select(k => Id3Schedule.TargetCount(23, k, tu)).ToArray();
            Assert.Equal(counts.Order(), counts);
            Assert.Equal(23, counts[^1]);
        }

        Assert.Equal(long.MaxValue, Id3Schedule.TargetCount(long.MaxValue, 3, 3));
    }

    [Fact]
    public void UnmaskingStepsFallEveryIntervalFromStepOneAndTheSplitAddsUp()
    {
        // Interval 3, T_u = 3: training steps 1, 4 and 7 unmask.
        Assert.Equal(new[] { 1, 0, 0, 2, 0, 0, 3, 0, 0, 0 }, Enumerable.Range(1, 10).Select(t => Id3Schedule.UnmaskingStepAt(t, 3, 3)));
        Assert.Equal(7, Id3Schedule.LastUnmaskingStep(3, 3));
        Assert.Equal((9L, 1L), Id3Schedule.Split(10, 0.15));
        Assert.Equal((0L, 4L), Id3Schedule.Split(4, 1.0));
        Assert.Equal((4L, 0L), Id3Schedule.Split(4, 0.0));
    }

    [Fact]
    public void TheD3ImportanceIsTheGradientOverTheWeightsMagnitudeToGamma()
    {
        // g = 0.5, theta = -2, eps = 0: gamma 1 -> 0.25, gamma 0 -> |g| = 0.5, gamma 2 -> 0.125.
        Assert.Equal(0.25, Id3Schedule.Importance(0.5, -2, 1, 0), 12);
        Assert.Equal(0.5, Id3Schedule.Importance(-0.5, -2, 0, 0), 12);
        Assert.Equal(0.125, Id3Schedule.Importance(0.5, 2, 2, 0), 12);
        Assert.Equal(1e8, Id3Schedule.Importance(1, 0, 1, 1e-8), 0);
    }

    private static nn.Module<Tensor, Tensor> Model()
    {
        torch.manual_seed(11);
        var model = nn.Sequential(("fc1", nn.Linear(6, 5)), ("act", nn.Tanh()), ("fc2", nn.Linear(5, 3)));
        foreach (var p in model.parameters())
        {
            p.requires_grad = false;
        }

        return model;
    }

    private static Func<Tensor> Loss(nn.Module<Tensor, Tensor> model)
    {
        var g = new Generator(5);
        return () => model.call(torch.randn(8, 6, generator: g)).sin().sum();
    }

    [Fact]
    public void TheFirstUnmaskingStepTakesTheHighestD3ScoresOfTheRawGradients()
    {
        var model = Model();
        var x = torch.randn(8, 6, generator: new Generator(9));
        Func<Tensor> loss = () => model.call(x).sin().sum();

        // Expected: the 4 = ceil(12 / 3) highest |g| / (|w| + eps) over both weights, computed by hand here.
        var w1 = model.get_parameter("fc1.weight")!;
        var w2 = model.get_parameter("fc2.weight")!;
        w1.requires_grad = w2.requires_grad = true;
        loss().backward();
        var scores = torch.cat([(w1.grad!.abs() / (w1.abs() + 1e-8)).flatten(), (w2.grad!.abs() / (w2.abs() + 1e-8)).flatten()]);
        var expected = scores.topk(4).indexes.data<long>().Order().ToArray();
        w1.grad = null;
        w2.grad = null;

        using var id3 = new Id3Unmasking(model, s_weights, new Id3Options(Budget: 12, UnmaskingSteps: 3, ExplorationShare: 0));
        using var trainer = new AdapterTrainer(id3.Parameters, new TrainingOptions { TotalSteps = 3, Callbacks = [id3] });
        trainer.TrainStep(loss);
        var mask = torch.cat([id3.Masks.MaskOf("fc1.weight").flatten(), id3.Masks.MaskOf("fc2.weight").flatten()]);
        Assert.Equal(expected, mask.nonzero().flatten().data<long>().ToArray());
    }

    [Fact]
    public void TheMaskGrowsOnScheduleNeverShrinksAndMaskedEntriesStayBitIdentical()
    {
        var model = Model();
        var baseBits = s_weights.Select(n => TensorBits.Bits(model.get_parameter(n)!)).ToArray();
        using var id3 = new Id3Unmasking(model, s_weights, new Id3Options(Budget: 13, UnmaskingSteps: 4, Interval: 2, ExplorationShare: 0.3, Seed: 4));
        using var trainer = new AdapterTrainer(id3.Parameters, new TrainingOptions { TotalSteps = 10, LearningRate = 0.05, WeightDecay = 0.2, Callbacks = [id3] });
        var loss = Loss(model);
        bool[]? previous = null;
        var expectedCounts = new long[] { 4, 4, 7, 7, 10, 10, 13, 13, 13, 13 };
        for (int step = 0; step < 10; step++)
        {
            trainer.TrainStep(loss);
            Assert.Equal(expectedCounts[step], id3.Masks.TrainedCount);
            var mask = s_weights.SelectMany(n => id3.Masks.MaskOf(n).flatten().data<bool>().ToArray()).ToArray();
            if (previous is not null)
            {
                Assert.All(Enumerable.Range(0, mask.Length), i => Assert.True(!previous[i] || mask[i], $"entry {i} was masked again"));
            }

            previous = mask;
            var bits = s_weights.SelectMany(n => TensorBits.Bits(model.get_parameter(n)!)).ToArray();
            var before = baseBits.SelectMany(b => b).ToArray();
            Assert.All(Enumerable.Range(0, mask.Length).Where(i => !mask[i]), i => Assert.Equal(before[i], bits[i]));
            Assert.Contains(Enumerable.Range(0, mask.Length).Where(i => mask[i]), i => before[i] != bits[i]);
        }
    }

    [Fact]
    public void AResumedRunUnmasksAndTrainsExactlyAsTheUninterruptedOne()
    {
        var straight = Run(10, store: null, resume: false);
        var store = new CheckpointStore(_dir);
        Run(5, store, resume: false);
        var resumed = Run(10, store, resume: true);
        Assert.Equal(straight.Mask, resumed.Mask);
        Assert.Equal(straight.Bits, resumed.Bits);
        Assert.Equal(15, straight.Mask.Count(b => b));
    }

    private static (int[] Bits, bool[] Mask) Run(int until, CheckpointStore? store, bool resume)
    {
        var model = Model();
        using var id3 = new Id3Unmasking(model, s_weights, new Id3Options(Budget: 15, UnmaskingSteps: 5, Interval: 2, ExplorationShare: 0.5, Seed: 8));
        using var trainer = new AdapterTrainer(id3.Parameters, new TrainingOptions { TotalSteps = 10, LearningRate = 0.05, Seed = 1, Callbacks = [id3] });
        var loss = Loss(model);
        if (resume)
        {
            CheckpointStore.Load(store!.Latest()!, model, trainer);
            for (int i = 0; i < trainer.Step; i++)
            {
                loss();
            }
        }

        while (trainer.Step < until)
        {
            trainer.TrainStep(loss);
        }

        if (!resume)
        {
            store?.Save(model, trainer, trainer.Step);
        }

        return (s_weights.SelectMany(n => TensorBits.Bits(model.get_parameter(n)!)).ToArray(),
            s_weights.SelectMany(n => id3.Masks.MaskOf(n).flatten().data<bool>().ToArray()).ToArray());
    }

    [Fact]
    public void BadSettingsAreRefusedNamingTheFieldAndTheFix()
    {
        var budget = Assert.Throws<ArgumentException>(() => new Id3Unmasking(Model(), s_weights, new Id3Options(Budget: 46)));
        Assert.Contains("Id3Options.Budget = 46", budget.Message, StringComparison.Ordinal);
        Assert.Contains("45 entries", budget.Message, StringComparison.Ordinal);
        var name = Assert.Throws<ArgumentException>(() => new Id3Unmasking(Model(), ["fc9.weight"], new Id3Options(Budget: 1)));
        Assert.Contains("'fc9.weight'", name.Message, StringComparison.Ordinal);
        var share = Assert.Throws<ArgumentException>(() => new Id3Unmasking(Model(), s_weights, new Id3Options(Budget: 1, ExplorationShare: 1.5)));
        Assert.Contains("ExplorationShare", share.Message, StringComparison.Ordinal);

        var model = Model();
        using var id3 = new Id3Unmasking(model, s_weights, new Id3Options(Budget: 10, UnmaskingSteps: 5, Interval: 3));
        using var trainer = new AdapterTrainer(id3.Parameters, new TrainingOptions { TotalSteps = 12, Callbacks = [id3] });
        var late = Assert.Throws<InvalidOperationException>(() => trainer.TrainStep(Loss(model)));
        Assert.Contains("13", late.Message, StringComparison.Ordinal);
        Assert.Contains("UnmaskingSteps", late.Message, StringComparison.Ordinal);
    }
}
