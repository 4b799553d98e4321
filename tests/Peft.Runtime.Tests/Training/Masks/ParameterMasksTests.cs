using Peft.Runtime.Tests.Training;
using Peft.Serialization;
using Peft.Training;
using Peft.Training.Checkpoints;
using Peft.Training.Masks;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Training.Masks;

public sealed class ParameterMasksTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-masks-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    /// <summary>Two linear layers built from a seed, frozen, as a base model.</summary>
    private static nn.Module<Tensor, Tensor> Model()
    {
        torch.manual_seed(7);
        var model = nn.Sequential(("fc1", nn.Linear(4, 5)), ("act", nn.Tanh()), ("fc2", nn.Linear(5, 2)));
        foreach (var p in model.parameters())
        {
            p.requires_grad = false;
        }

        return model;
    }

    private static Func<Tensor> Loss(nn.Module<Tensor, Tensor> model, int seed)
    {
        var g = new Generator((ulong)seed);
        return () =>
        {
            var x = torch.randn(8, 4, generator: g);
            return model.call(x).pow(2).mean();
        };
    }

    /// <summary>Entries 0, 3, 7 and 12 of fc1.weight train, everything else of it is masked.</summary>
    private static Tensor SomeEntries()
    {
        var mask = torch.zeros(5, 4, dtype: ScalarType.Bool);
        mask.view(-1).index_fill_(0, torch.tensor(new long[] { 0, 3, 7, 12 }), true);
        return mask;
    }

    [Fact]
    public void MaskedEntriesStayBitIdenticalUnderAdamWWithWeightDecayWhileTheChosenOnesTrain()
    {
        var model = Model();
        using var masks = new ParameterMasks(model);
        masks.Add("fc1.weight", SomeEntries());
        var before = TensorBits.Bits(model.get_parameter("fc1.weight")!);
        var options = new TrainingOptions { TotalSteps = 25, LearningRate = 0.05, WeightDecay = 0.1, Callbacks = new ITrainingCallback[] { masks } };
        using var trainer = new AdapterTrainer(masks.Parameters, options);
        var loss = Loss(model, 1);
        for (int i = 0; i < 25; i++)
        {
            trainer.TrainStep(loss);
        }

        var after = TensorBits.Bits(model.get_parameter("fc1.weight")!);
        var trained = new HashSet<int> { 0, 3, 7, 12 };
        for (int i = 0; i < before.Length; i++)
        {
            if (trained.Contains(i))
            {
                Assert.NotEqual(before[i], after[i]);
            }
            else
            {
                Assert.Equal(before[i], after[i]);
            }
        }

        // AdamW's moments of masked entries never moved: their gradients were zero from the first step.
        var expAvgSq = TensorBits.Values(trainer.Optimizer.GetState(0, "exp_avg_sq"));
        Assert.All(Enumerable.Range(0, 20).Where(i => !trained.Contains(i)), i => Assert.Equal(0f, expAvgSq[i]));
        Assert.Equal(4, masks.TrainedCount);
        Assert.Equal(20, masks.TotalCount);
    }

    [Fact]
    public void MasksGrowOnlyAndAreSavedAndResumedWithTheCheckpointBitForBit()
    {
        // Uninterrupted: 3 steps, unmask entries 1 and 2, 3 more steps.
        var (uninterrupted, finalMask) = Run(stopAfter: 6, store: null);

        // Interrupted after step 4, resumed in a new model with a fresh (smaller) mask: the checkpoint brings the grown one back.
        var store = new CheckpointStore(_dir);
        Run(stopAfter: 4, store: store);
        var (resumed, resumedMask) = Run(stopAfter: 6, store: store, resume: true);

        Assert.Equal(uninterrupted, resumed);
        Assert.Equal(finalMask, resumedMask);
        Assert.Equal(6, finalMask.Count(b => b));
    }

    private static (int[] Bits, bool[] Mask) Run(int stopAfter, CheckpointStore? store, bool resume = false)
    {
        var model = Model();
        using var masks = new ParameterMasks(model);
        masks.Add("fc1.weight", SomeEntries());
        var options = new TrainingOptions { TotalSteps = 6, LearningRate = 0.05, WeightDecay = 0.1, Seed = 3, Callbacks = new ITrainingCallback[] { masks } };
        using var trainer = new AdapterTrainer(masks.Parameters, options);
        var loss = Loss(model, 1);
        if (resume)
        {
            CheckpointStore.Load(store!.Latest()!, model, trainer);
            loss = Loss(model, 1);
            for (int i = 0; i < trainer.Step; i++)
            {
                loss();
            }
        }

        while (trainer.Step < stopAfter)
        {
            if (trainer.Step == 3)
            {
                long before = masks.CountOf("fc1.weight");
                masks.Unmask("fc1.weight", torch.tensor(new long[] { 1, 2, 3 }));
                Assert.Equal(before + 2, masks.CountOf("fc1.weight"));
            }

            trainer.TrainStep(loss);
        }

        if (store is not null && !resume)
        {
            store.Save(model, trainer, dataPosition: trainer.Step);
        }

        var mask = masks.MaskOf("fc1.weight").data<bool>().ToArray();
        return (TensorBits.Bits(model.get_parameter("fc1.weight")!), mask);
    }

    [Fact]
    public void ACheckpointWithoutTheMasksIsRefusedNamingTheCallback()
    {
        var model = Model();
        foreach (var p in model.parameters())
        {
            p.requires_grad = true;
        }

        using (var plain = new AdapterTrainer(model.parameters(), new TrainingOptions { TotalSteps = 2 }))
        {
            plain.TrainStep(Loss(model, 1));
            new CheckpointStore(_dir).Save(model, plain, 1);
        }

        using var masks = new ParameterMasks(model);
        foreach (var (name, p) in model.named_parameters())
        {
            masks.Add(name, torch.ones_like(p, dtype: ScalarType.Bool));
        }

        using var trainer = new AdapterTrainer(masks.Parameters, new TrainingOptions { TotalSteps = 2, Callbacks = new ITrainingCallback[] { masks } });
        var ex = Assert.Throws<CheckpointException>(() => CheckpointStore.Load(new CheckpointStore(_dir).Latest()!, model, trainer));
        Assert.Contains("'masks'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheSparseDeltaHoldsOnlyTheTrainedEntriesAppliesOntoTheBaseAndReverts()
    {
        var model = Model();
        using var masks = new ParameterMasks(model);
        masks.Add("fc1.weight", SomeEntries());
        masks.Add("fc2.bias", torch.tensor(new[] { false, true }));
        using (var trainer = new AdapterTrainer(masks.Parameters, new TrainingOptions { TotalSteps = 5, LearningRate = 0.1, Callbacks = new ITrainingCallback[] { masks } }))
        {
            var loss = Loss(model, 2);
            for (int i = 0; i < 5; i++)
            {
                trainer.TrainStep(loss);
            }
        }

        string file = Path.Combine(_dir, "sparse_delta.safetensors");
        Directory.CreateDirectory(_dir);
        using (var delta = masks.Delta())
        {
            Assert.Equal(5, delta.Count);
            Assert.Equal(new long[] { 0, 3, 7, 12 }, delta.IndicesOf("fc1.weight").data<long>().ToArray());
            delta.Save(file);
        }

        var trained = TensorBits.Values(model.get_parameter("fc1.weight")!);
        var trainedBias = TensorBits.Values(model.get_parameter("fc2.bias")!);
        var base_ = Model();
        var baseWeight = TensorBits.Values(base_.get_parameter("fc1.weight")!);
        using var loaded = SparseDelta.Load(file);
        loaded.ApplyTo(base_);
        Assert.Equal(trained, TensorBits.Values(base_.get_parameter("fc1.weight")!), new FloatTolerance(1e-6f));
        Assert.Equal(trainedBias, TensorBits.Values(base_.get_parameter("fc2.bias")!), new FloatTolerance(1e-6f));
        loaded.RevertFrom(base_);
        Assert.Equal(baseWeight, TensorBits.Values(base_.get_parameter("fc1.weight")!), new FloatTolerance(1e-6f));
        Assert.NotEqual(trained, baseWeight);

        var other = nn.Sequential(("fc1", nn.Linear(3, 5)));
        var ex = Assert.Throws<ArgumentException>(() => loaded.ApplyTo(other));
        Assert.Contains("fc1.weight", ex.Message, StringComparison.Ordinal);
        SafetensorsFile.Write(Path.Combine(_dir, "other.safetensors"), new[] { new KeyValuePair<string, Tensor>("w", torch.zeros(2)) });
        var notDelta = Assert.Throws<SafetensorsFormatException>(() => SparseDelta.Load(Path.Combine(_dir, "other.safetensors")));
        Assert.Contains("not a sparse delta", notDelta.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadMasksAreRefusedNamingTheWeightAndTheFix()
    {
        var model = Model();
        using var masks = new ParameterMasks(model);
        var unknown = Assert.Throws<ArgumentException>(() => masks.Add("fc3.weight", torch.ones(1, dtype: ScalarType.Bool)));
        Assert.Contains("'fc3.weight'", unknown.Message, StringComparison.Ordinal);
        var shape = Assert.Throws<ArgumentException>(() => masks.Add("fc1.weight", torch.ones(4, 5, dtype: ScalarType.Bool)));
        Assert.Contains("[5, 4]", shape.Message, StringComparison.Ordinal);
        masks.Add("fc1.weight", SomeEntries());
        var range = Assert.Throws<ArgumentException>(() => masks.Unmask("fc1.weight", torch.tensor(new long[] { 20 })));
        Assert.Contains("[0, 20)", range.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => masks.Add("fc1.weight", SomeEntries()));
    }

    private sealed class FloatTolerance(float tolerance) : IEqualityComparer<float>
    {
        public bool Equals(float x, float y) => Math.Abs(x - y) <= tolerance;

        public int GetHashCode(float obj) => 0;
    }
}
