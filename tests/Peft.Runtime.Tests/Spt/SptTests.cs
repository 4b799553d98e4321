using Peft.Runtime.Tests.Training;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Spt;

public class SptTests
{
    [Fact]
    public void A768By768MatrixIsStructuredFrom2458SelectedEntriesAndAVectorFullFromDimOverBeta()
    {
        var options = new SptOptions(Budget: 1);
        Assert.Equal(2457.6, SptAllocation.StructuredThreshold(768, 768, 8, 5), 9);
        Assert.Equal(SptTuning.Unstructured, SptAllocation.Decide([768, 768], 2457, options));
        Assert.Equal(SptTuning.Structured, SptAllocation.Decide([768, 768], 2458, options));
        Assert.Equal(SptTuning.Frozen, SptAllocation.Decide([768, 768], 0, options));
        // A vector of 768: 768 / 5 = 153.6.
        Assert.Equal(SptTuning.Unstructured, SptAllocation.Decide([768], 153, options));
        Assert.Equal(SptTuning.Full, SptAllocation.Decide([768], 154, options));
        // [out 3072, in 768] with r = 4, alpha = 2: 4 * 3840 / 2 = 7680.
        Assert.Equal(SptTuning.Structured, SptAllocation.Decide([3072, 768], 7680, options with { Rank = 4, Alpha = 2 }));
        Assert.Equal(SptTuning.Unstructured, SptAllocation.Decide([3072, 768], 7679, options with { Rank = 4, Alpha = 2 }));
    }

    [Fact]
    public void SensitivityIsTheSumOfSquaredGradientsOverTheBatches()
    {
        // y = w . x_b with w = [1, 2]: the gradient of batch b is x_b; x_0 = [1, 2], x_1 = [3, -1] => S = [1 + 9, 4 + 1] = [10, 5].
        var model = nn.Sequential(("fc", nn.Linear(2, 1, hasBias: false)));
        var w = model.get_parameter("fc.weight")!;
        using (no_grad())
        {
            w.copy_(tensor(new float[] { 1, 2 }).reshape(1, 2));
        }

        w.requires_grad = false;
        var xs = new[] { tensor(new float[] { 1, 2 }), tensor(new float[] { 3, -1 }) };
        var s = global::Peft.Spt.Sensitivity(model, ["fc.weight"], b => model.call(xs[b].reshape(1, 2)).sum(), 2);
        Assert.Equal(new[] { 10.0, 5.0 }, TensorBits.Doubles(s["fc.weight"]));
        Assert.False(w.requires_grad);
    }

    [Fact]
    public void TheTopTauIsGlobalAcrossWeights()
    {
        var s = new Dictionary<string, Tensor>
        {
            ["a"] = tensor(new double[] { 1, 5, 3, 0 }).reshape(2, 2),
            ["b"] = tensor(new double[] { 4, 2 }),
        };
        var masks = global::Peft.Spt.TopTau(s, 3);
        Assert.Equal(new[] { false, true, true, false }, masks["a"].flatten().data<bool>().ToArray());
        Assert.Equal(new[] { true, false }, masks["b"].data<bool>().ToArray());
    }

    [Fact]
    public void APlanAllocatesByTheRuleAndTrainingKeepsUnselectedEntriesExact()
    {
        torch.manual_seed(3);
        var model = new SptNet();
        foreach (var p in model.parameters())
        {
            p.requires_grad = false;
        }

        var g = new Generator(2);
        var batches = Enumerable.Range(0, 8).Select(_ => randn(4, 16, generator: g) * 3).ToArray();
        Func<int, Tensor> loss = b => model.call(batches[b % batches.Length]).square().mean();
        string[] names = ["fc1.weight", "fc2.weight", "fc2.bias"];
        // Rank 1, alpha 1: fc1.weight [16, 16] is structured from 32 selected entries, fc2.weight [2, 16] from 18; the
        // second layer's weights are the most sensitive (seeded: fc1.weight 9, fc2.weight 29, fc2.bias 2 of 40).
        var options = new SptOptions(Budget: 40, Rank: 1, Alpha: 1);
        var plan = global::Peft.Spt.Plan(model, names, loss, options);

        Assert.Equal(40, plan.Weights.Sum(w => w.Count));
        Assert.All(plan.Weights, w => Assert.Equal(SptAllocation.Decide(w.Shape, w.Count, options), w.Tuning));
        Assert.All(plan.Weights, w => Assert.Equal(w.Count, w.Mask.sum().ToInt64()));
        string summary = string.Join("; ", plan.Weights.Select(w => $"{w.Name} {w.Count} {w.Tuning}"));
        Assert.True(plan.Weights.Any(w => w.Tuning == SptTuning.Structured) && plan.Weights.Any(w => w.Tuning == SptTuning.Unstructured), summary);
        Assert.Contains(plan.Weights, w => w.Tuning is SptTuning.Unstructured or SptTuning.Full);
        var unstructured = plan.Weights.First(w => w.Tuning == SptTuning.Unstructured);
        var before = TensorBits.Bits(model.get_parameter(unstructured.Name)!);

        using var spt = global::Peft.Spt.Apply(model, plan);
        Assert.Equal(plan.Weights.Count(w => w.Tuning == SptTuning.Structured), model.AdaptedLayers().Count());
        using var trainer = new AdapterTrainer(spt.Parameters, new TrainingOptions { TotalSteps = 10, LearningRate = 0.05, WeightDecay = 0.1, Callbacks = [spt.Masks] });
        for (int i = 0; i < 10; i++)
        {
            trainer.TrainStep(() => loss(i));
        }

        var after = TensorBits.Bits(spt.Masks.Parameters[spt.Masks.Names.ToList().IndexOf(unstructured.Name)]);
        var selected = unstructured.Mask.flatten().data<bool>().ToArray();
        Assert.All(Enumerable.Range(0, selected.Length), i => Assert.True(selected[i] || before[i] == after[i], $"unselected entry {i} moved"));
        Assert.Contains(Enumerable.Range(0, selected.Length), i => selected[i] && before[i] != after[i]);
        var loraB = model.named_parameters().Where(p => p.name.Contains("lora_B", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(loraB);
        Assert.All(loraB, p => Assert.True(p.parameter.abs().sum().ToDouble() > 0, $"{p.name} did not train"));
        Assert.Equal(unstructured.Count + 2 + spt.Parameters.Except(spt.Masks.Parameters).Sum(p => p.numel()), spt.TrainedCount);
    }

    [Fact]
    public void BadSettingsAreRefusedNamingTheField()
    {
        var model = nn.Sequential(("fc", nn.Linear(2, 2)));
        var budget = Assert.Throws<ArgumentException>(() => global::Peft.Spt.Plan(model, ["fc.weight"], _ => throw new InvalidOperationException(), new SptOptions(Budget: 5)));
        Assert.Contains("SptOptions.Budget = 5", budget.Message, StringComparison.Ordinal);
        var name = Assert.Throws<ArgumentException>(() => global::Peft.Spt.Plan(model, ["fc.wieght"], _ => throw new InvalidOperationException(), new SptOptions(Budget: 1)));
        Assert.Contains("'fc.wieght'", name.Message, StringComparison.Ordinal);
        var batches = Assert.Throws<ArgumentException>(() => global::Peft.Spt.Plan(model, ["fc.weight"], _ => throw new InvalidOperationException(), new SptOptions(Budget: 1, SensitivityBatches: 0)));
        Assert.Contains("SensitivityBatches", batches.Message, StringComparison.Ordinal);
    }
}

/// <summary>Two linear layers SPT can give LoRA (held in members of an [Adaptable] class).</summary>
[Adaptable]
internal sealed partial class SptNet : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> fc1 = nn.Linear(16, 16);
    private nn.Module<Tensor, Tensor> fc2 = nn.Linear(16, 2);

    public SptNet() : base(nameof(SptNet)) => InitializePeft();

    public override Tensor forward(Tensor x) => fc2.call(fc1.call(x).tanh());
}
