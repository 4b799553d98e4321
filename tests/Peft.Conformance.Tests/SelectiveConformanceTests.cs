using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Conformance.Tests;

/// <summary>
/// The conformance matrix's selective part (<see cref="SelectiveConformanceCase"/>): every row runs the same checks on
/// <see cref="TinyStack"/>.
/// </summary>
[Collection(nameof(TorchSharpGlobalState))]
public sealed class SelectiveConformanceTests
{
    [Theory]
    [MemberData(nameof(ConformanceMatrix.SelectiveNames), MemberType = typeof(ConformanceMatrix))]
    public void ChoosingWhatTrainsLeavesTheOutputsBitEqual(string name)
    {
        var row = ConformanceMatrix.GetSelective(name);
        using var model = new TinyStack();
        using var ids = SelectiveRows.Ids(0);
        using var before = model.call(ids);
        var run = row.Select(model);
        using (run.Owner)
        {
            Assert.NotEmpty(run.Parameters);
            using var after = model.call(ids);
            Assert.True(before.eq(after).all().item<bool>(), $"{name}: choosing what trains changed the outputs by {(before - after).abs().max().item<float>()}");
        }
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.SelectiveNames), MemberType = typeof(ConformanceMatrix))]
    public void TrainingChangesTheChosenEntriesOnlyAndEveryOtherWeightStaysBitEqual(string name)
    {
        var row = ConformanceMatrix.GetSelective(name);
        using var model = new TinyStack();
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var run = row.Select(model);
        using (run.Owner)
        {
            using (var trainer = new AdapterTrainer(run.Parameters, new TrainingOptions { TotalSteps = 4, LearningRate = 0.05, WarmupSteps = 0, Callbacks = run.Callbacks }))
            {
                for (int step = 0; step < 4; step++) trainer.TrainStep(() => SelectiveRows.Loss(model, step));
            }

            var now = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            var chosen = new HashSet<Tensor>(run.Parameters, ReferenceEqualityComparer.Instance);
            int compared = 0;
            long moved = 0;
            foreach (var (key, value) in original)
            {
                if (!now.TryGetValue(key, out var current)) continue;   // a weight SPT wrapped in a LoRA layer: its factors are new
                compared++;
                using var changed = current.detach().ne(value);
                Tensor allowed = run.Masks is { } masks && masks.Names.Contains(key)
                    ? masks.MaskOf(key)
                    : chosen.Contains(current) ? ones_like(changed) : zeros_like(changed);
                using var outside = changed.logical_and(allowed.logical_not());
                Assert.False(outside.any().item<bool>(), $"{name}: {outside.sum().item<long>()} entries of {key} moved outside what the method chose");
                moved += changed.sum().item<long>();
            }

            Assert.True(compared >= original.Count / 2, $"{name}: only {compared} of {original.Count} weights could be compared");
            long newMoved = model.named_parameters().Where(p => !original.ContainsKey(p.name) && p.parameter.requires_grad).Sum(p => p.parameter.ne(0).sum().item<long>());
            Assert.True(moved + newMoved > 0, $"{name}: training changed nothing");
        }
    }
}
