using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Training;

/// <summary>
/// Per-parameter learning rates (<see cref="TrainingOptions.ParameterLearningRate"/>): each parameter trains exactly as
/// TorchSharp's AdamW would at its own rate, on the common schedule; optimizers that cannot are refused, as are bad rates.
/// </summary>
public class ParameterLearningRateTests
{
    private static TrainingOptions Plain(int steps, double lr) => new()
    {
        TotalSteps = steps, LearningRate = lr, MinLearningRateRatio = 1.0, MaxGradNorm = 0,
    };

    private static Parameter Param(double[] values) => new(torch.tensor(values, ScalarType.Float64));

    private static Tensor Loss(Parameter a, Parameter b) => a.pow(2).sum() + (b - 3).pow(2).sum();

    [Fact]
    public void EachParameterTrainsBitForBitAsAdamWAtItsOwnRate()
    {
        using var a = Param(new[] { 1.0, -2.0 });
        using var b = Param(new[] { 0.5 });
        using var refA = Param(new[] { 1.0, -2.0 });
        using var refB = Param(new[] { 0.5 });
        var options = Plain(5, 0.1) with { ParameterLearningRate = p => ReferenceEquals(p, b) ? 0.001 : null, WeightDecay = 0.01 };
        using var trainer = new AdapterTrainer(new[] { a, b }, options);
        using var fast = torch.optim.AdamW(new[] { refA }, 0.1, 0.9, 0.999, 1e-8, 0.01);
        using var slow = torch.optim.AdamW(new[] { refB }, 0.001, 0.9, 0.999, 1e-8, 0.01);
        Assert.True(trainer.Optimizer.SupportsLearningRateScales);
        for (int step = 1; step <= 5; step++)
        {
            trainer.TrainStep(() => Loss(a, b));
            using (var scope = torch.NewDisposeScope())
            {
                refA.grad = null;
                refB.grad = null;
                Loss(refA, refB).backward();
                fast.step();
                slow.step();
            }

            Assert.True(a.eq(refA).all().item<bool>(), $"a differs at step {step}");
            Assert.True(b.eq(refB).all().item<bool>(), $"b differs at step {step}");
        }

        // Adam's first steps move each entry by about its rate: b moved about 5 · 0.001, a about 5 · 0.1.
        Assert.InRange(b.item<double>(), 0.5 + 0.004, 0.5 + 0.006);
        Assert.InRange(a[0].item<double>(), 0.4, 0.6);

        // The optimizer's state is still per parameter, in the trainer's order.
        Assert.Equal(new long[] { 2 }, trainer.Optimizer.GetState(0, "exp_avg").shape);
        Assert.Equal(new long[] { 1 }, trainer.Optimizer.GetState(1, "exp_avg").shape);
        Assert.Equal(5, trainer.Optimizer.GetScalarState(1, "step"));
    }

    [Fact]
    public void ScalesAreTheRatesOverTheCommonRateAndNullWhenAllAreCommon()
    {
        using var a = Param(new[] { 1.0 });
        using var b = Param(new[] { 1.0 });
        var options = Plain(1, 0.2) with { ParameterLearningRate = p => ReferenceEquals(p, b) ? 0.05 : null };
        Assert.Equal(new[] { 1.0, 0.25 }, options.LearningRateScales(new[] { a, b }));
        Assert.Null((options with { ParameterLearningRate = _ => 0.2 }).LearningRateScales(new[] { a, b }));
        Assert.Null(Plain(1, 0.2).LearningRateScales(new[] { a, b }));
        var ex = Assert.Throws<ArgumentException>(() => (options with { ParameterLearningRate = _ => -1 }).LearningRateScales(new[] { a }));
        Assert.Equal(nameof(TrainingOptions.ParameterLearningRate), ex.ParamName);
    }

    [Fact]
    public void AnOptimizerWithOneRateForAllIsRefusedNamingTheOption()
    {
        using var a = Param(new[] { 1.0 });
        using var b = Param(new[] { 1.0 });
        var options = Plain(1, 0.2) with { Optimizer = Optimizers.Sgd, ParameterLearningRate = p => ReferenceEquals(p, b) ? 0.05 : null };
        var ex = Assert.Throws<InvalidOperationException>(() => new AdapterTrainer(new[] { a, b }, options));
        Assert.Contains("ParameterLearningRate", ex.Message);
        Assert.Contains("SGD", ex.Message);
    }
}
