using Peft.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Training;

public class TrainingOptionsTests
{
    private static readonly TrainingOptions Valid = new() { TotalSteps = 100 };

    public static TheoryData<string, string, TrainingOptions> BadOptions() => new()
    {
        { "LearningRate", "0", Valid with { LearningRate = 0 } },
        { "LearningRate", "-0.001", Valid with { LearningRate = -1e-3 } },
        { "LearningRate", "NaN", Valid with { LearningRate = double.NaN } },
        { "LearningRate", "Infinity", Valid with { LearningRate = double.PositiveInfinity } },
        { "WeightDecay", "-0.1", Valid with { WeightDecay = -0.1 } },
        { "WeightDecay", "NaN", Valid with { WeightDecay = double.NaN } },
        { "Beta1", "1", Valid with { Beta1 = 1.0 } },
        { "Beta1", "-0.5", Valid with { Beta1 = -0.5 } },
        { "Beta2", "1.5", Valid with { Beta2 = 1.5 } },
        { "Beta2", "NaN", Valid with { Beta2 = double.NaN } },
        { "Epsilon", "0", Valid with { Epsilon = 0 } },
        { "Epsilon", "-1E-08", Valid with { Epsilon = -1e-8 } },
        { "TotalSteps", "0", new TrainingOptions() },
        { "TotalSteps", "-5", Valid with { TotalSteps = -5 } },
        { "WarmupSteps", "-1", Valid with { WarmupSteps = -1 } },
        { "WarmupSteps", "101", Valid with { WarmupSteps = 101 } },
        { "MinLearningRateRatio", "-0.1", Valid with { MinLearningRateRatio = -0.1 } },
        { "MinLearningRateRatio", "1.5", Valid with { MinLearningRateRatio = 1.5 } },
        { "MinLearningRateRatio", "NaN", Valid with { MinLearningRateRatio = double.NaN } },
        { "MaxGradNorm", "NaN", Valid with { MaxGradNorm = double.NaN } },
        { "LogEvery", "0", Valid with { LogEvery = 0 } },
        { "OnNonFiniteLoss", "7", Valid with { OnNonFiniteLoss = (NonFiniteLossPolicy)7 } },
        { "Optimizer", "null", Valid with { Optimizer = null! } },
        { "Momentum", "1", Valid with { Momentum = 1.0 } },
        { "Momentum", "-0.1", Valid with { Momentum = -0.1 } },
        { "Momentum", "NaN", Valid with { Momentum = double.NaN } },
        { "Callbacks", "null", Valid with { Callbacks = null! } },
        { "Callbacks", "a null item", Valid with { Callbacks = new ITrainingCallback[] { null! } } },
        { "Regularizers", "null", Valid with { Regularizers = null! } },
        { "Regularizers", "a null item", Valid with { Regularizers = new Func<Tensor>[] { null! } } },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void EachBadValueThrowsNamingTheOptionAndTheValue(string option, string value, TrainingOptions options)
    {
        var ex = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Equal(option, ex.ParamName);
        Assert.Contains($"TrainingOptions.{option} ", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"got {value}.", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void TrainerRejectsBadOptions(string option, string value, TrainingOptions options)
    {
        using var w = new Parameter(zeros(2, 2));
        var ex = Assert.Throws<ArgumentException>(() => new AdapterTrainer(new[] { w }, options));
        Assert.Equal(option, ex.ParamName);
        Assert.Contains($"got {value}.", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DefaultsAreTheDocumentedOnesAndValidOnceTotalStepsIsSet()
    {
        var o = new TrainingOptions { TotalSteps = 1 };
        o.Validate();
        Assert.Equal((1e-3, 0.0, 0.9, 0.999, 1e-8), (o.LearningRate, o.WeightDecay, o.Beta1, o.Beta2, o.Epsilon));
        Assert.Equal((0, 0.0, 1.0, (int?)null, 10), (o.WarmupSteps, o.MinLearningRateRatio, o.MaxGradNorm, o.Seed, o.LogEvery));
        Assert.Equal(NonFiniteLossPolicy.Throw, o.OnNonFiniteLoss);
        Assert.Same(Optimizers.AdamW, o.Optimizer);
        Assert.Equal(0.9, o.Momentum);
        Assert.Empty(o.Callbacks);
        Assert.Empty(o.Regularizers);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.PositiveInfinity)]
    public void MaxGradNormAtOrBelowZeroOrInfiniteIsAccepted(double maxGradNorm) =>
        (Valid with { MaxGradNorm = maxGradNorm, WarmupSteps = 100, MinLearningRateRatio = 1.0, Beta1 = 0, Seed = -3 }).Validate();
}
