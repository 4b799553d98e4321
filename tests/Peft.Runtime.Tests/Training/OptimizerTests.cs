using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Training;

public class OptimizerTests
{
    /// <summary>Constant learning rate, no clipping: the trainer's update is then the optimizer's alone.</summary>
    private static TrainingOptions Plain(int steps, double lr) => new()
    {
        TotalSteps = steps, LearningRate = lr, MinLearningRateRatio = 1.0, MaxGradNorm = 0,
    };

    private static void ReferenceStep(LeastSquares problem, optim.Optimizer optimizer)
    {
        using var scope = torch.NewDisposeScope();
        problem.W.grad = null;
        problem.Loss().backward();
        optimizer.step();
    }

    [Fact]
    public void TheDefaultOptimizerIsTorchSharpsAdamWBitForBit()
    {
        using var ours = new LeastSquares(seed: 5);
        using var theirs = new LeastSquares(seed: 5);
        var options = Plain(30, 0.05) with { WeightDecay = 0.01, Beta1 = 0.8, Beta2 = 0.99, Epsilon = 1e-7 };
        using var trainer = new AdapterTrainer(new[] { ours.W }, options);
        using var reference = torch.optim.AdamW(new[] { theirs.W }, 0.05, 0.8, 0.99, 1e-7, 0.01);

        Assert.IsType<AdamWOptimizer>(trainer.Optimizer);
        Assert.Equal("AdamW", trainer.Optimizer.Kind);
        for (int step = 1; step <= options.TotalSteps; step++)
        {
            trainer.TrainStep(ours.Loss);
            ReferenceStep(theirs, reference);
            Assert.True(TensorBits.Bits(theirs.W).SequenceEqual(TensorBits.Bits(ours.W)), $"W differs at step {step}");
        }
    }

    [Theory]
    [InlineData(0.9, 0.01, false)]
    [InlineData(0.5, 0.0, true)]
    [InlineData(0.0, 0.02, false)]
    public void SgdIsTorchSharpsSgdBitForBit(double momentum, double weightDecay, bool nesterov)
    {
        using var ours = new LeastSquares(seed: 6);
        using var theirs = new LeastSquares(seed: 6);
        var options = Plain(25, 0.05) with
        {
            Momentum = momentum, WeightDecay = weightDecay,
            Optimizer = nesterov ? (p, o) => new SgdOptimizer(p, o.Momentum, o.WeightDecay, nesterov: true) : Optimizers.Sgd,
        };
        using var trainer = new AdapterTrainer(new[] { ours.W }, options);
        using var reference = torch.optim.SGD(new[] { theirs.W }, 0.05, momentum, dampening: 0, weight_decay: weightDecay, nesterov: nesterov);

        Assert.Equal("SGD", trainer.Optimizer.Kind);
        double initial = ours.CurrentLoss();
        for (int step = 1; step <= options.TotalSteps; step++)
        {
            trainer.TrainStep(ours.Loss);
            ReferenceStep(theirs, reference);
            Assert.True(TensorBits.Bits(theirs.W).SequenceEqual(TensorBits.Bits(ours.W)), $"W differs at step {step}");
        }

        Assert.True(ours.CurrentLoss() < 0.5 * initial, $"SGD did not descend: loss {initial} -> {ours.CurrentLoss()}");
    }

    /// <summary>
    /// f(θ) = ½‖θ‖², so g = θ. With lr 0.1 and μ 0.9: buf₁ = θ₀, θ₁ = 0.9 θ₀; g₂ = 0.9 θ₀, buf₂ = 0.9 θ₀ + 0.9 θ₀ = 1.8 θ₀,
    /// θ₂ = 0.9 θ₀ − 0.18 θ₀ = 0.72 θ₀.
    /// </summary>
    [Fact]
    public void SgdMomentumMatchesTheHandComputedSteps()
    {
        using var theta = new Parameter(torch.tensor(new[] { 1.0, -2.0, 0.5 }));
        using var trainer = new AdapterTrainer(new[] { theta }, Plain(2, 0.1) with { Optimizer = Optimizers.Sgd, Momentum = 0.9 });
        Tensor Loss() => 0.5 * theta.pow(2).sum();

        trainer.TrainStep(Loss);
        Assert.Equal(new[] { 0.9, -1.8, 0.45 }, TensorBits.Doubles(theta), new Tolerance(1e-15));
        Assert.Equal(new[] { 1.0, -2.0, 0.5 }, TensorBits.Doubles(trainer.Optimizer.GetState(0, "momentum_buffer")), new Tolerance(1e-15));

        trainer.TrainStep(Loss);
        Assert.Equal(new[] { 0.72, -1.44, 0.36 }, TensorBits.Doubles(theta), new Tolerance(1e-15));
        Assert.Equal(new[] { 1.8, -3.6, 0.9 }, TensorBits.Doubles(trainer.Optimizer.GetState(0, "momentum_buffer")), new Tolerance(1e-15));
    }

    [Fact]
    public void OptimizerStateIsExposedByName()
    {
        using var problem = new LeastSquares();
        using var adam = new AdapterTrainer(new[] { problem.W }, new TrainingOptions { TotalSteps = 3 });
        Assert.Equal(new[] { "exp_avg", "exp_avg_sq" }, adam.Optimizer.StateNames);
        Assert.Equal(new[] { "step" }, adam.Optimizer.ScalarStateNames);
        Assert.Equal(0, adam.Optimizer.GetScalarState(0, "step"));
        Assert.All(TensorBits.Values(adam.Optimizer.GetState(0, "exp_avg")), v => Assert.Equal(0f, v)); // allocated from the start
        adam.TrainStep(problem.Loss);
        Assert.Equal(1, adam.Optimizer.GetScalarState(0, "step"));
        Assert.Contains(TensorBits.Values(adam.Optimizer.GetState(0, "exp_avg_sq")), v => v > 0);
        Assert.Equal(new long[] { LeastSquares.In, LeastSquares.Out }, adam.Optimizer.GetState(0, "exp_avg").shape);

        adam.Optimizer.SetScalarState(0, "step", 7);
        Assert.Equal(7, adam.Optimizer.GetScalarState(0, "step"));
        var unknown = Assert.Throws<ArgumentException>(() => adam.Optimizer.GetState(0, "momentum_buffer"));
        Assert.Contains("The AdamW optimizer has no state 'momentum_buffer'; it has: exp_avg, exp_avg_sq.", unknown.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => adam.Optimizer.GetState(1, "exp_avg"));

        using var other = new LeastSquares();
        using var plain = new AdapterTrainer(new[] { other.W }, new TrainingOptions { TotalSteps = 3, Optimizer = Optimizers.Sgd, Momentum = 0 });
        Assert.Empty(plain.Optimizer.StateNames);
        Assert.Empty(plain.Optimizer.ScalarStateNames);
        Assert.Throws<ArgumentException>(() => plain.Optimizer.GetScalarState(0, "step"));
    }

    [Fact]
    public void SgdCreatedInsideACallerDisposeScopeKeepsItsMomentumBuffers()
    {
        using var problem = new LeastSquares();
        AdapterTrainer trainer;
        using (torch.NewDisposeScope())
        {
            trainer = new AdapterTrainer(new[] { problem.W }, new TrainingOptions { TotalSteps = 3, Optimizer = Optimizers.Sgd });
        }

        using (trainer)
        {
            trainer.TrainStep(problem.Loss);
            trainer.TrainStep(problem.Loss);
            Assert.False(trainer.Optimizer.GetState(0, "momentum_buffer").IsInvalid);
        }
    }

    [Fact]
    public void SgdLeavesAParameterWithoutGradientAlone()
    {
        using var problem = new LeastSquares();
        using var unused = new Parameter(ones(3));
        using var trainer = new AdapterTrainer(new[] { problem.W, unused }, new TrainingOptions { TotalSteps = 3, Optimizer = Optimizers.Sgd, WeightDecay = 0.1 });
        trainer.TrainStep(problem.Loss);
        Assert.All(TensorBits.Values(unused), v => Assert.Equal(1f, v));
        Assert.All(TensorBits.Values(trainer.Optimizer.GetState(1, "momentum_buffer")), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void AFactoryThatReturnsNullOrUsesOtherParametersIsRefused()
    {
        using var problem = new LeastSquares();
        using var stranger = new Parameter(zeros(2));
        var none = Assert.Throws<InvalidOperationException>(() =>
            new AdapterTrainer(new[] { problem.W }, new TrainingOptions { TotalSteps = 1, Optimizer = (_, _) => null! }));
        Assert.Contains("returned null", none.Message, StringComparison.Ordinal);

        var other = Assert.Throws<InvalidOperationException>(() =>
            new AdapterTrainer(new[] { problem.W }, new TrainingOptions { TotalSteps = 1, Optimizer = (_, o) => new SgdOptimizer(new[] { stranger }) }));
        Assert.Contains("created a SGD optimizer over other parameters than the 1 it was given", other.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SgdRejectsBadHyperParameters()
    {
        using var w = new Parameter(zeros(2));
        Assert.Equal("momentum", Assert.Throws<ArgumentOutOfRangeException>(() => new SgdOptimizer(new[] { w }, momentum: 1.0)).ParamName);
        Assert.Equal("weightDecay", Assert.Throws<ArgumentOutOfRangeException>(() => new SgdOptimizer(new[] { w }, weightDecay: -1)).ParamName);
        Assert.Equal("momentum", Assert.Throws<ArgumentOutOfRangeException>(() => new SgdOptimizer(new[] { w }, momentum: 0, nesterov: true)).ParamName);
        Assert.Equal("perturbationScale", Assert.Throws<ArgumentOutOfRangeException>(() => Optimizers.MeZO(0)).ParamName);
    }
}

public class MeZOTests
{
    /// <summary>
    /// f(θ) = ½‖θ‖². Central differences are exact for a quadratic: (L+ − L−) / 2ε = ½(‖θ+εz‖² − ‖θ−εz‖²) / 2ε = θ·z, so
    /// one MeZO step is θ' = θ − lr (θ·z) z, and the reported loss is L+ = ½‖θ + εz‖².
    /// </summary>
    [Fact]
    public void OneStepOnHalfTheSquaredNormIsTheHandDerivedUpdate()
    {
        const double lr = 0.1, epsilon = 1e-3;
        using var theta = new Parameter(torch.tensor(new[] { 1.0, -2.0, 0.5 }));
        var start = TensorBits.Doubles(theta);
        using var trainer = new AdapterTrainer(new[] { theta }, new TrainingOptions { TotalSteps = 3, LearningRate = lr, Optimizer = Optimizers.MeZO(epsilon, seed: 7) });
        var mezo = Assert.IsType<MeZOOptimizer>(trainer.Optimizer);
        Assert.False(mezo.RequiresGradients);

        double[] z;
        using (torch.NewDisposeScope())
        {
            z = TensorBits.Doubles(mezo.Direction(1)[0]);
        }

        int evaluations = 0;
        bool gradientsRecorded = false;
        var progress = trainer.TrainStep(() =>
        {
            evaluations++;
            gradientsRecorded |= torch.is_grad_enabled();
            return 0.5 * theta.pow(2).sum();
        });

        double dot = start.Zip(z, (t, d) => t * d).Sum();
        double lossPlus = 0.5 * start.Zip(z, (t, d) => (t + (epsilon * d)) * (t + (epsilon * d))).Sum();
        var after = TensorBits.Doubles(theta);
        for (int i = 0; i < 3; i++)
        {
            double expected = start[i] - (lr * dot * z[i]);
            Assert.True(Math.Abs(after[i] - expected) < 1e-9, $"θ[{i}]: expected {expected:R}, got {after[i]:R}");
        }

        Assert.Equal(2, evaluations);
        Assert.False(gradientsRecorded);
        Assert.Null(theta.grad);
        Assert.True(Math.Abs(mezo.LastProjectedGradient - dot) < 1e-9, $"projected gradient {mezo.LastProjectedGradient:R}, θ·z = {dot:R}");
        Assert.True(Math.Abs(progress.Loss - lossPlus) < 1e-12, $"reported loss {progress.Loss:R}, L+ = {lossPlus:R}");
        Assert.True(double.IsNaN(progress.GradNorm));
        Assert.Equal(1, trainer.Step);
    }

    [Fact]
    public void DirectionsRepeatForAStepAndDifferBetweenSteps()
    {
        using var theta = new Parameter(zeros(4, 2));
        using var mezo = new MeZOOptimizer(new[] { theta }, seed: 3);
        using var scope = torch.NewDisposeScope();
        Assert.Equal(TensorBits.Bits(mezo.Direction(5)[0]), TensorBits.Bits(mezo.Direction(5)[0]));
        Assert.NotEqual(TensorBits.Bits(mezo.Direction(5)[0]), TensorBits.Bits(mezo.Direction(6)[0]));
        using var other = new MeZOOptimizer(new[] { theta }, seed: 4);
        Assert.NotEqual(TensorBits.Bits(mezo.Direction(5)[0]), TensorBits.Bits(other.Direction(5)[0]));
    }

    [Fact]
    public void MeZOFitsAQuadraticWithForwardPassesOnly()
    {
        using var theta = new Parameter(torch.tensor(new[] { 1.0, -2.0, 0.5, 3.0 }));
        using var trainer = new AdapterTrainer(new[] { theta }, new TrainingOptions
        {
            TotalSteps = 200, LearningRate = 0.1, MinLearningRateRatio = 1.0, Optimizer = Optimizers.MeZO(seed: 11),
        });
        double initial = TensorBits.Doubles(theta).Sum(v => v * v);
        for (int i = 0; i < 200; i++)
        {
            trainer.TrainStep(() => 0.5 * theta.pow(2).sum());
        }

        double final = TensorBits.Doubles(theta).Sum(v => v * v);
        Assert.True(final < 1e-4 * initial, $"‖θ‖² went from {initial} to {final}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ANonFiniteEvaluationRestoresTheParametersAndFollowsThePolicy(int failingEvaluation)
    {
        using var theta = new Parameter(torch.tensor(new[] { 1.0, -2.0, 0.5 }));
        var start = TensorBits.Doubles(theta);
        int evaluations = 0;
        Tensor Loss() => ++evaluations == failingEvaluation ? theta.sum() * double.NaN : 0.5 * theta.pow(2).sum();

        var options = new TrainingOptions { TotalSteps = 3, LearningRate = 0.1, Optimizer = Optimizers.MeZO() };
        using (var strict = new AdapterTrainer(new[] { theta }, options))
        {
            var ex = Assert.Throws<NonFiniteLossException>(() => strict.TrainStep(Loss));
            Assert.Equal(1, ex.Step);
            Assert.True(double.IsNaN(ex.Loss));
            Assert.Equal(0, strict.Step);
            Assert.Equal(start, TensorBits.Doubles(theta), new Tolerance(1e-12));
        }

        evaluations = 0;
        using var lenient = new AdapterTrainer(new[] { theta }, options with { OnNonFiniteLoss = NonFiniteLossPolicy.SkipStep });
        var skipped = lenient.TrainStep(Loss);
        Assert.True(skipped.Skipped);
        Assert.True(double.IsNaN(skipped.Loss));
        Assert.Equal((1, 1), (lenient.Step, lenient.SkippedSteps));
        Assert.Equal(start, TensorBits.Doubles(theta), new Tolerance(1e-12));
    }

    private sealed class IdleOptimizer(IEnumerable<Parameter> parameters) : PeftOptimizer(parameters)
    {
        public override string Kind => "Idle";

        public override bool RequiresGradients => false;

        public override void Step(OptimizerStepContext context)
        {
        }
    }

    [Fact]
    public void AnOptimizerWithoutGradientsThatEvaluatesNothingIsAnError()
    {
        using var theta = new Parameter(zeros(2));
        using var trainer = new AdapterTrainer(new[] { theta }, new TrainingOptions { TotalSteps = 2, Optimizer = (p, _) => new IdleOptimizer(p) });
        var ex = Assert.Throws<InvalidOperationException>(() => trainer.TrainStep(() => theta.sum()));
        Assert.Contains("The Idle optimizer does not use gradients, but its step 1 evaluated no loss", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, trainer.Step);
    }
}
