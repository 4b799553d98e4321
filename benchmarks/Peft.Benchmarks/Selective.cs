using Peft;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// ID³ in the methods table (section 6): the four-layer stack's four Linear weights, 1% of their entries trained through
/// <see cref="Id3Unmasking"/>'s masks with AdamW, once the budget is reached (the first step unmasks it all from its own
/// gradients: <c>UnmaskingSteps = 1</c>). Its step is the frozen base's backward with weight gradients, the masks' gradient
/// zeroing, AdamW over the four dense weights and the write-back of the masked entries.
/// </summary>
internal static class SelectiveProbe
{
    public const string Id3Name = "ID3 (1% of the 4 weights)";

    public const string SptName = "SPT (1% of the 4 weights and their biases)";

    /// <summary>The timed step of SPT on a new stack, planned from 8 batches of <paramref name="x"/>'s rows; the plan's
    /// summary goes to <paramref name="summary"/> (with 1% of 4M entries each 1024x1024 matrix usually passes r(in+out)/5
    /// = 3276.8 and gets LoRA r=8: SPT then costs what LoRA does).</summary>
    public static Action SptStep(Tensor x, List<IDisposable> owned, out string summary)
    {
        var model = new AdaptableStack();
        foreach (var p in model.parameters()) p.requires_grad = false;
        var names = model.named_parameters().Where(p => p.name.StartsWith('l')).Select(p => p.name).ToArray();
        long entries = model.named_parameters().Where(p => p.name.StartsWith('l') && p.parameter.dim() == 2).Sum(p => p.parameter.numel());
        var rows = x.shape[0] / 8;
        var plan = Spt.Plan(model, names, b => model.call(x.narrow(0, b * rows, rows)).square().mean(), new SptOptions(entries / 100));
        var spt = Spt.Apply(model, plan);
        summary = $"{plan.Weights.Count(w => w.Tuning == SptTuning.Structured)} LoRA, {plan.Weights.Count(w => w.Tuning == SptTuning.Unstructured)} masked, {plan.Weights.Count(w => w.Tuning == SptTuning.Full)} full; {spt.TrainedCount:N0} values";
        var optimizer = new AdamWOptimizer(spt.Parameters, 1e-4);
        owned.Add(model);
        owned.Add(spt);
        owned.Add(optimizer);
        int step = 0;
        return () =>
        {
            using var scope = NewDisposeScope();
            step++;
            foreach (var p in spt.Parameters) p.grad = null;
            model.call(x.detach().requires_grad_(true)).square().mean().backward();
            var context = new TrainingCallbackContext(step, int.MaxValue, 1e-4, double.NaN, 0, double.NaN, spt.Parameters, optimizer);
            using (no_grad())
            {
                spt.Masks.AfterBackward(context);
            }

            optimizer.Step(new OptimizerStepContext(step, 1e-4, null));
            using (no_grad())
            {
                spt.Masks.AfterStep(context);
            }
        };
    }

    /// <summary>The timed step of ID³ on a new stack; the objects to dispose go to <paramref name="owned"/>.</summary>
    public static Action Id3Step(Tensor x, List<IDisposable> owned)
    {
        var model = new AdaptableStack();
        foreach (var p in model.parameters()) p.requires_grad = false;
        var names = model.named_parameters().Where(p => p.name.EndsWith(".weight", StringComparison.Ordinal) && p.parameter.dim() == 2).Select(p => p.name).ToArray();
        long entries = model.named_parameters().Where(p => names.Contains(p.name)).Sum(p => p.parameter.numel());
        var id3 = new Id3Unmasking(model, names, new Id3Options(entries / 100, UnmaskingSteps: 1));
        var optimizer = new AdamWOptimizer(id3.Parameters, 1e-4);
        owned.Add(model);
        owned.Add(id3);
        owned.Add(optimizer);
        int step = 0;
        void Step()
        {
            using var scope = NewDisposeScope();
            step++;
            foreach (var p in id3.Parameters) p.grad = null;
            var input = x.detach().requires_grad_(true);
            model.call(input).square().mean().backward();
            var context = new TrainingCallbackContext(step, int.MaxValue, 1e-4, double.NaN, 0, double.NaN, id3.Parameters, optimizer);
            using (no_grad())
            {
                id3.AfterBackward(context);
            }

            optimizer.Step(new OptimizerStepContext(step, 1e-4, null));
            using (no_grad())
            {
                id3.AfterStep(context);
            }
        }

        Step();   // unmasks the whole budget from this step's gradients; the timed steps are the steady state
        return Step;
    }

    /// <summary><c>--selective</c>: ID³'s and SPT's steps against LoRA r=8's and the frozen base's alone (section 6's lines).</summary>
    public static List<(string Name, string Value, string Note)> Results(int rounds)
    {
        using var x = randn(8 * 128, LoRAStack.Hidden);
        var owned = new List<IDisposable>();
        using var plain = new AdaptableStack();
        foreach (var p in plain.parameters()) p.requires_grad = false;
        var lora = new AdaptableStack();
        lora.ApplyTargets(new PeftTargets(BenchmarkedMethods.All[0].Targets, BenchmarkedMethods.All[0].Options));
        var optimizer = optim.AdamW(lora.TrainableParameters().ToList(), 1e-4);
        owned.Add(lora);
        owned.Add(optimizer);
        void Base()
        {
            using var scope = NewDisposeScope();
            plain.call(x.detach().requires_grad_(true)).square().mean().backward();
        }

        void LoRA()
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            lora.call(x.detach().requires_grad_(true)).square().mean().backward();
            optimizer.step();
        }

        var times = Timing.Interleaved(rounds, ("base", Base), ("LoRA r=8", LoRA), (Id3Name, Id3Step(x, owned)), (SptName, SptStep(x, owned, out var summary)));
        var results = Lines(times, summary);
        foreach (var d in owned) d.Dispose();
        return results;
    }

    /// <summary>Section 6's ID³ and SPT lines from interleaved times holding "base", "LoRA r=8", <see cref="Id3Name"/> and <see cref="SptName"/>.</summary>
    public static List<(string Name, string Value, string Note)> Lines(Dictionary<string, List<double>> times, string sptSummary) =>
    [
        ($"{SptName} training step, 4x (LayerNorm, Linear(1024,1024)), 1024 rows", Timing.Ms(times[SptName]), "median; plan: " + sptSummary),
        ($"**{SptName} step / LoRA r=8 step**", Timing.Ratio(times[SptName], times["LoRA r=8"]), "same run"),
        ($"{Id3Name} training step, 4x (LayerNorm, Linear(1024,1024)), 1024 rows", Timing.Ms(times[Id3Name]), "median"),
        ($"**{Id3Name} step / LoRA r=8 step**", Timing.Ratio(times[Id3Name], times["LoRA r=8"]), "same run"),
        ($"{Id3Name} step / frozen-base step", Timing.Ratio(times[Id3Name], times["base"]), "same run"),
    ];
}
