using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Training;

/// <summary>The custom optimizer and callback of docs/usage.md (Optimizers, Callbacks), as written there, do what it says.</summary>
public class UsageExampleTests
{
    /// <summary>Sign descent with a per-parameter step count, checkpointed like any other optimizer's state.</summary>
    private sealed class SignSgd(IEnumerable<Parameter> parameters) : PeftOptimizer(parameters)
    {
        private readonly long[] _steps = new long[parameters.Count()];

        public override string Kind => "SignSGD";

        public override IReadOnlyList<string> ScalarStateNames => ["step"];

        public override long GetScalarState(int i, string name) => _steps[i];

        public override void SetScalarState(int i, string name, long value) => _steps[i] = value;

        public override void Step(OptimizerStepContext context)
        {
            using var _ = torch.no_grad();
            for (int i = 0; i < Parameters.Count; i++)
            {
                if (Parameters[i].grad is not { } grad) continue;
                using var sign = grad.sign();
                Parameters[i].add_(sign, alpha: -context.LearningRate);
                _steps[i]++;
            }
        }
    }

    /// <summary>Freezes the given LoRA ranks (an AdaLoRA-style mask): their gradients are zeroed before clipping and the update.</summary>
    private sealed class RankMask(Parameter loraA, int[] prunedRanks) : ITrainingCallback
    {
        public void AfterBackward(TrainingCallbackContext context)
        {
            foreach (int r in prunedRanks) loraA.grad?.select(0, r).zero_();
        }
    }

    [Fact]
    public void TheCustomOptimizerTrainsAndExposesItsStepCounts()
    {
        using var problem = new LeastSquares();
        using var unused = new Parameter(zeros(2));
        using var trainer = new AdapterTrainer(new[] { problem.W, unused }, new TrainingOptions
        {
            TotalSteps = 100, LearningRate = 0.05, Optimizer = (p, _) => new SignSgd(p),
        });
        double initial = problem.CurrentLoss();
        for (int i = 0; i < 100; i++) trainer.TrainStep(problem.Loss);

        Assert.Equal("SignSGD", trainer.Optimizer.Kind);
        Assert.Equal(100, trainer.Optimizer.GetScalarState(0, "step"));
        Assert.Equal(0, trainer.Optimizer.GetScalarState(1, "step"));
        Assert.True(problem.CurrentLoss() < 0.1 * initial, $"loss {initial} -> {problem.CurrentLoss()}");
    }

    [Fact]
    public void TheRankMaskKeepsPrunedRanksFixed()
    {
        using var loraA = new Parameter(torch.ones(4, 3));
        using var x = torch.linspace(-1, 1, 24).reshape(8, 3);
        using var trainer = new AdapterTrainer(new[] { loraA }, new TrainingOptions
        {
            TotalSteps = 5, LearningRate = 0.1, Callbacks = [new RankMask(loraA, [2, 3])],
        });
        for (int i = 0; i < 5; i++) trainer.TrainStep(() => x.matmul(loraA.t()).sin().sum());

        var rows = TensorBits.Values(loraA);
        Assert.All(rows.Skip(6), v => Assert.Equal(1f, v));          // ranks 2 and 3 untouched
        Assert.Contains(rows.Take(6), v => v != 1f);                  // ranks 0 and 1 trained
    }
}
