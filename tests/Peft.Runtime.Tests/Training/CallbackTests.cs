using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Training;

public class CallbackTests
{
    /// <summary>Records each hook call as "name.Hook" with its context, and what the gradients and weights were then.</summary>
    private sealed class Recorder(string name, List<string> log) : ITrainingCallback
    {
        public List<(string Hook, TrainingCallbackContext Context, double GradNorm, int[] Weights)> Calls { get; } = new();

        public Func<string, int, bool>? ThrowAt { get; set; }

        public void AfterBackward(TrainingCallbackContext context) => Record(nameof(AfterBackward), context);

        public void BeforeStep(TrainingCallbackContext context) => Record(nameof(BeforeStep), context);

        public void AfterStep(TrainingCallbackContext context) => Record(nameof(AfterStep), context);

        private void Record(string hook, TrainingCallbackContext context)
        {
            log.Add(name + "." + hook);
            var grad = context.Parameters[0].grad;
            Calls.Add((hook, context, grad is null ? double.NaN : grad.norm().ToDouble(), TensorBits.Bits(context.Parameters[0])));
            if (ThrowAt?.Invoke(hook, context.Step) == true)
            {
                throw new InvalidOperationException($"{name} refuses step {context.Step} in {hook}");
            }
        }
    }

    [Fact]
    public void CallbacksRunInOrderAroundTheOptimizerStepWithTheStepsValues()
    {
        using var problem = new LeastSquares();
        var log = new List<string>();
        var first = new Recorder("a", log);
        var second = new Recorder("b", log);
        const double maxNorm = 0.01;
        var options = new TrainingOptions { TotalSteps = 4, LearningRate = 0.05, WarmupSteps = 2, MaxGradNorm = maxNorm, Callbacks = new[] { first, second } };
        using var trainer = new AdapterTrainer(new[] { problem.W }, options);

        var progress = trainer.TrainStep(problem.Loss);

        Assert.Equal(new[] { "a.AfterBackward", "b.AfterBackward", "a.BeforeStep", "b.BeforeStep", "a.AfterStep", "b.AfterStep" }, log);
        var (afterBackward, beforeStep, afterStep) = (first.Calls[0], first.Calls[1], first.Calls[2]);
        Assert.All(first.Calls, call =>
        {
            Assert.Equal(1, call.Context.Step);
            Assert.Equal(4, call.Context.TotalSteps);
            Assert.Equal(progress.LearningRate, call.Context.LearningRate);
            Assert.Equal(progress.Loss, call.Context.Loss);
            Assert.Equal(0.0, call.Context.RegularizerLoss);
            Assert.Same(trainer.Optimizer, call.Context.Optimizer);
            Assert.Same(trainer.Parameters, call.Context.Parameters);
        });

        // After backward: raw gradients, norm not computed yet. Before the step: clipped gradients, pre-clip norm known.
        Assert.True(double.IsNaN(afterBackward.Context.GradNorm));
        Assert.True(Math.Abs(afterBackward.GradNorm - progress.GradNorm) <= 1e-5 * progress.GradNorm, $"{afterBackward.GradNorm} vs {progress.GradNorm}");
        Assert.Equal(progress.GradNorm, beforeStep.Context.GradNorm);
        Assert.True(beforeStep.GradNorm <= maxNorm * 1.0001, $"clipped norm {beforeStep.GradNorm}");
        Assert.Equal(afterBackward.Weights, beforeStep.Weights);
        Assert.NotEqual(beforeStep.Weights, afterStep.Weights);
        Assert.Equal(TensorBits.Bits(problem.W), afterStep.Weights);
        Assert.Equal(progress.GradNorm, afterStep.Context.GradNorm);

        trainer.TrainStep(problem.Loss);
        Assert.Equal(new[] { 2, 2, 2 }, first.Calls.Skip(3).Select(c => c.Context.Step));
    }

    [Theory]
    [InlineData(nameof(ITrainingCallback.AfterBackward))]
    [InlineData(nameof(ITrainingCallback.BeforeStep))]
    public void AnExceptionBeforeTheUpdateAbortsTheStepWithoutTouchingParametersOrOptimizerState(string hook)
    {
        using var faulty = new LeastSquares();
        using var clean = new LeastSquares();
        var log = new List<string>();
        var thrower = new Recorder("a", log) { ThrowAt = (h, step) => h == hook && step == 3 };
        var later = new Recorder("b", log);
        var options = new TrainingOptions { TotalSteps = 6, LearningRate = 0.05, WarmupSteps = 2 };
        using var a = new AdapterTrainer(new[] { faulty.W }, options with { Callbacks = new[] { thrower, later } });
        using var b = new AdapterTrainer(new[] { clean.W }, options);
        a.TrainStep(faulty.Loss);
        a.TrainStep(faulty.Loss);
        var before = TensorBits.Bits(faulty.W);
        long adamSteps = a.Optimizer.GetScalarState(0, "step");
        log.Clear();

        var ex = Assert.Throws<InvalidOperationException>(() => a.TrainStep(faulty.Loss));

        Assert.Equal($"a refuses step 3 in {hook}", ex.Message);
        Assert.Equal(before, TensorBits.Bits(faulty.W));
        Assert.Equal(2, a.Step);
        Assert.Equal(adamSteps, a.Optimizer.GetScalarState(0, "step"));
        Assert.Equal("a." + hook, log[^1]); // b's hook at that point did not run, and nothing after it
        Assert.DoesNotContain(log, entry => entry.EndsWith(".AfterStep", StringComparison.Ordinal));

        // The optimizer state is untouched: the rest of the run equals a run that never failed, bit for bit.
        thrower.ThrowAt = null;
        while (a.Step < options.TotalSteps)
        {
            a.TrainStep(faulty.Loss);
        }

        for (int i = 0; i < options.TotalSteps; i++)
        {
            b.TrainStep(clean.Loss);
        }

        Assert.Equal(TensorBits.Bits(clean.W), TensorBits.Bits(faulty.W));
    }

    [Fact]
    public void AnExceptionAfterTheStepLeavesTheUpdateAppliedAndCountedWithoutAReport()
    {
        using var problem = new LeastSquares();
        var sink = new ListProgress();
        var thrower = new Recorder("a", new List<string>()) { ThrowAt = (h, _) => h == nameof(ITrainingCallback.AfterStep) };
        using var trainer = new AdapterTrainer(new[] { problem.W }, new TrainingOptions { TotalSteps = 1, Callbacks = new[] { thrower } }, sink);
        var before = TensorBits.Bits(problem.W);

        Assert.Throws<InvalidOperationException>(() => trainer.TrainStep(problem.Loss));

        Assert.NotEqual(before, TensorBits.Bits(problem.W));
        Assert.Equal(1, trainer.Step);
        Assert.Empty(sink.Reports);
    }

    /// <summary>A rank mask as AdaLoRA or SoRA would apply it: zeroing gradients after backward freezes those entries.</summary>
    private sealed class ColumnMask(int column) : ITrainingCallback
    {
        public void AfterBackward(TrainingCallbackContext context) => context.Parameters[0].grad!.select(1, column).zero_();
    }

    [Fact]
    public void GradientChangesAfterBackwardCountInTheNormAndTheUpdate()
    {
        using var masked = new LeastSquares();
        using var plain = new LeastSquares();
        using (torch.no_grad())
        {
            masked.W.fill_(0.1f);
            plain.W.fill_(0.1f);
        }

        var options = new TrainingOptions { TotalSteps = 5, LearningRate = 0.05, Optimizer = Optimizers.Sgd };
        using var a = new AdapterTrainer(new[] { masked.W }, options with { Callbacks = new[] { new ColumnMask(1) } });
        using var b = new AdapterTrainer(new[] { plain.W }, options);
        var pa = a.TrainStep(masked.Loss);
        var pb = b.TrainStep(plain.Loss);

        Assert.True(pa.GradNorm < pb.GradNorm, $"masked norm {pa.GradNorm} should be below {pb.GradNorm}");
        for (int i = 0; i < 4; i++)
        {
            a.TrainStep(masked.Loss);
        }

        var w = TensorBits.ToDouble2D(masked.W);
        for (int row = 0; row < LeastSquares.In; row++)
        {
            Assert.Equal(0.1f, (float)w[row, 1]);
            Assert.NotEqual(0.1f, (float)w[row, 0]);
        }
    }

    [Fact]
    public void WithAnOptimizerWithoutGradientsThereIsNoAfterBackwardAndTheLossComesAfterTheStep()
    {
        using var theta = new Parameter(torch.tensor(new[] { 1.0f, 2.0f }));
        var log = new List<string>();
        var recorder = new Recorder("a", log);
        using var trainer = new AdapterTrainer(new[] { theta }, new TrainingOptions
        {
            TotalSteps = 2, LearningRate = 0.1, Optimizer = Optimizers.MeZO(), Callbacks = new[] { recorder },
        });

        var progress = trainer.TrainStep(() => 0.5 * theta.pow(2).sum());

        Assert.Equal(new[] { "a.BeforeStep", "a.AfterStep" }, log);
        Assert.True(double.IsNaN(recorder.Calls[0].Context.Loss));
        Assert.Equal(progress.Loss, recorder.Calls[1].Context.Loss);
        Assert.True(double.IsNaN(recorder.Calls[1].Context.GradNorm));
    }
}

public class RegularizerTests
{
    [Fact]
    public void TermsAreAddedToTheLossAndReportedSeparately()
    {
        using var withTerm = new LeastSquares();
        using var inLoss = new LeastSquares();
        const double lambda = 0.3;
        var options = new TrainingOptions { TotalSteps = 10, LearningRate = 0.05, WarmupSteps = 2 };
        using var a = new AdapterTrainer(new[] { withTerm.W }, options with
        {
            Regularizers = new Func<Tensor>[] { () => lambda * withTerm.W.pow(2).sum(), () => withTerm.W.abs().sum() * 0.01 },
        });
        using var b = new AdapterTrainer(new[] { inLoss.W }, options);

        for (int step = 1; step <= options.TotalSteps; step++)
        {
            double expectedTerm;
            using (torch.no_grad())
            {
                expectedTerm = (lambda * withTerm.W.pow(2).sum()).ToDouble() + (withTerm.W.abs().sum() * 0.01).ToDouble();
            }

            var pa = a.TrainStep(withTerm.Loss);
            var pb = b.TrainStep(() => inLoss.Loss() + (lambda * inLoss.W.pow(2).sum()) + (inLoss.W.abs().sum() * 0.01));

            Assert.Equal(expectedTerm, pa.RegularizerLoss, 12);
            Assert.Equal(pa.Loss + pa.RegularizerLoss, pa.TotalLoss);
            Assert.True(Math.Abs(pa.TotalLoss - pb.Loss) <= 1e-6 * pb.Loss, $"total {pa.TotalLoss} vs {pb.Loss} at step {step}");
            Assert.Equal(0.0, pb.RegularizerLoss);
            Assert.Equal(TensorBits.Bits(inLoss.W), TensorBits.Bits(withTerm.W)); // same objective, same gradients, same weights
        }

        Assert.True(a.Step == 10 && a.SkippedSteps == 0);
    }

    [Fact]
    public void TheNonFinitePolicyAppliesToTheTotal()
    {
        using var problem = new LeastSquares();
        bool poison = false;
        var options = new TrainingOptions
        {
            TotalSteps = 5, LearningRate = 0.05,
            Regularizers = new Func<Tensor>[] { () => problem.W.sum() * (poison ? double.NaN : 0.01) },
        };
        using var strict = new AdapterTrainer(new[] { problem.W }, options);
        strict.TrainStep(problem.Loss);
        var before = TensorBits.Bits(problem.W);
        poison = true;

        var ex = Assert.Throws<NonFiniteLossException>(() => strict.TrainStep(problem.Loss));
        Assert.True(double.IsNaN(ex.Loss)); // the total
        Assert.False(ex.IsGradientNonFinite);
        Assert.Null(problem.W.grad);
        Assert.Equal(before, TensorBits.Bits(problem.W));
        Assert.Equal(1, strict.Step);

        var sink = new ListProgress();
        using var lenient = new AdapterTrainer(new[] { problem.W }, options with { OnNonFiniteLoss = NonFiniteLossPolicy.SkipStep }, sink);
        var skipped = lenient.TrainStep(problem.Loss);
        Assert.True(skipped.Skipped);
        Assert.True(double.IsFinite(skipped.Loss)); // the loss alone was fine
        Assert.True(double.IsNaN(skipped.RegularizerLoss));
        Assert.Equal(before, TensorBits.Bits(problem.W));
        Assert.Equal(new[] { skipped }, sink.Reports);
    }

    [Fact]
    public void BadTermsAreRejectedWithoutAdvancing()
    {
        using var problem = new LeastSquares();
        var vector = new TrainingOptions { TotalSteps = 2, Regularizers = new Func<Tensor>[] { () => problem.W.sum(), () => problem.W.pow(2) } };
        using var a = new AdapterTrainer(new[] { problem.W }, vector);
        var ex = Assert.Throws<InvalidOperationException>(() => a.TrainStep(problem.Loss));
        Assert.Contains("TrainingOptions.Regularizers[1] must return a scalar (one-element) term; got a tensor of shape [4, 3]", ex.Message, StringComparison.Ordinal);

        using var b = new AdapterTrainer(new[] { problem.W }, vector with { Regularizers = new Func<Tensor>[] { () => null! } });
        Assert.Contains("Regularizers[0] returned null", Assert.Throws<InvalidOperationException>(() => b.TrainStep(problem.Loss)).Message, StringComparison.Ordinal);
        Assert.Equal((0, 0), (a.Step, b.Step));
    }

    [Fact]
    public void AZeroOrderOptimizerSeesTheRegularizedObjective()
    {
        using var theta = new Parameter(torch.tensor(new[] { 1.0, -2.0 }));
        using var trainer = new AdapterTrainer(new[] { theta }, new TrainingOptions
        {
            TotalSteps = 1, LearningRate = 0.1, Optimizer = Optimizers.MeZO(seed: 2),
            Regularizers = new Func<Tensor>[] { () => theta.pow(2).sum() },   // together with the loss: 1.5‖θ‖²
        });
        var mezo = (MeZOOptimizer)trainer.Optimizer;
        double[] z;
        using (torch.NewDisposeScope())
        {
            z = TensorBits.Doubles(mezo.Direction(1)[0]);
        }

        var progress = trainer.TrainStep(() => 0.5 * theta.pow(2).sum());

        double dot = (1.0 * z[0]) - (2.0 * z[1]);
        Assert.True(Math.Abs(mezo.LastProjectedGradient - (3 * dot)) < 1e-9, $"{mezo.LastProjectedGradient} vs {3 * dot}");
        Assert.True(progress.RegularizerLoss > 0 && progress.Loss > 0);
        Assert.Equal(2 * progress.Loss, progress.RegularizerLoss, 9);
    }
}
