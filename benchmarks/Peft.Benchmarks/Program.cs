using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Peft;
using Peft.Benchmarks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static Peft.Benchmarks.Steps;

// Peft benchmarks. Every comparison is measured in one process and one run, with the variants interleaved
// round by round, and reported as a ratio of medians: these machines are noisy, ratios are what carries over.
//   dotnet run -c Release --project benchmarks/Peft.Benchmarks -- [--rounds N] [--output docs/benchmarks.md]
// Internal: --memory lora|full runs one training configuration and prints its peak resident memory; --freezing-probe MODE
// likewise for layer freezing (Freezing.cs); --freezing runs section 8 (layer freezing) alone and prints its lines;
// --init-only times only section 7 (PiSSA/OLoRA/LoftQ/CorDA initialisation, EVA's data step); --methods-only runs only section 6 (every method's step
// against LoRA's and the frozen base's), the table a new method joins; --selective runs section 6's ID3 and SPT lines
// alone (against LoRA r=8 and the frozen base, Selective.cs); --bottleneck runs section 9 (bottleneck adapters) alone;
// --prefix runs section 10 (prefix tuning and MAM inside attention) alone;
// --meft runs section 11 (MEFT's activation memory against LoRA, Meft.cs) alone; --step-memory MODE:LAYERS is the child
// process that measures one configuration's step memory (StepMemory.cs);
// --prompts runs section 12 (prompt tuning, DePT and P-tuning against LoRA on a transformer stack) alone;
// --attention runs section 13 (methods inside attention: the adaption prompt, LoFiT) alone;
// --siblings runs section 14 (sibling projections run as one product against separate layers, Siblings.cs) alone;
// --dispatch runs section 15 (the general layer against a one-LoRA forward written out by hand, Dispatch.cs) alone.

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

int rounds = 15;
string? output = null;
string? memoryMode = null;
string? freezingMode = null;
bool initOnly = false;
bool methodsOnly = false;
string? stepMemory = null;
string? alone = null;
// The sections that run alone with their flag, printing their lines only.
var sectionsAlone = new Dictionary<string, Func<int, IEnumerable<(string Name, string Value, string Note)>>>
{
    ["--freezing"] = FreezingProbe.Results,
    ["--selective"] = SelectiveProbe.Results,
    ["--bottleneck"] = BottleneckProbe.Results,
    ["--prefix"] = PrefixProbe.Results,
    ["--meft"] = _ => MeftProbe.Results(),
    ["--prompts"] = PromptProbe.Results,
    ["--attention"] = AttentionProbe.Results,
    ["--siblings"] = SiblingProbe.Results,
    ["--dispatch"] = DispatchProbe.Results,
};
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--output": output = args[++i]; break;
        case "--memory": memoryMode = args[++i]; break;
        case "--freezing-probe": freezingMode = args[++i]; break;
        case "--init-only": initOnly = true; break;
        case "--methods-only": methodsOnly = true; break;
        case "--step-memory": stepMemory = args[++i]; break;
        case var flag when sectionsAlone.ContainsKey(flag): alone = flag; break;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
}

if (memoryMode is not null) return MemoryProbe.Run(memoryMode);
if (stepMemory is not null) return StepMemory.Run(stepMemory);
if (freezingMode is not null) return FreezingProbe.Run(freezingMode);
if (alone is not null)
{
    foreach (var (name, value, note) in sectionsAlone[alone](rounds)) Console.WriteLine($"| {name} | {value} | {note} |");
    return 0;
}

manual_seed(0);
var report = new StringBuilder();
var results = new List<(string Name, string Value, string Note)>();
Console.WriteLine($"threads: {get_num_threads()}, rounds: {rounds}");

// 1. Training step: LoRA (r=8, hidden 1024) vs the frozen base (forward + backward through the same layers).
if (!initOnly && !methodsOnly)
{
    using var lora = new LoRAStack();
    using var plain = new PlainStack();
    CopyBase(lora, plain);
    var loraParams = lora.TrainableParameters().ToList();
    using var loraOpt = optim.AdamW(loraParams, 1e-4);
    foreach (var p in plain.parameters()) p.requires_grad = false;
    using var fullModel = new PlainStack();
    var fullParams = fullModel.parameters().ToList();
    using var fullOpt = optim.AdamW(fullParams, 1e-4);
    using var x = randn(8 * 128, LoRAStack.Hidden);

    void BaseStep()
    {
        using var scope = NewDisposeScope();
        var input = x.detach().requires_grad_(true); // gradients flow back through every frozen layer, as they must to reach earlier adapters
        var loss = plain.call(input).square().mean();
        loss.backward();
    }
    void LoRAStep()
    {
        using var scope = NewDisposeScope();
        loraOpt.zero_grad();
        var input = x.detach().requires_grad_(true);
        var loss = lora.call(input).square().mean();
        loss.backward();
        loraOpt.step();
    }
    void FullStep()
    {
        using var scope = NewDisposeScope();
        fullOpt.zero_grad();
        var input = x.detach().requires_grad_(true);
        var loss = fullModel.call(input).square().mean();
        loss.backward();
        fullOpt.step();
    }

    var times = Timing.Interleaved(rounds, ("base", BaseStep), ("lora", LoRAStep), ("fused", Fused(LoRAStep)), ("full", FullStep));
    results.Add(("frozen-base step (fwd+bwd), 4x Linear(1024,1024), 1024 rows", Timing.Ms(times["base"]), "median"));
    results.Add(("LoRA r=8 training step", Timing.Ms(times["lora"]), "median"));
    results.Add(("LoRA r=8 training step, fused kernel (PeftKernels.FusedPaths)", Timing.Ms(times["fused"]), "median"));
    results.Add(("full fine-tuning step", Timing.Ms(times["full"]), "median"));
    results.Add(("**LoRA step / frozen-base step**", Timing.Ratio(times["lora"], times["base"]), "same run"));
    results.Add(("LoRA step, fused kernel / frozen-base step", Timing.Ratio(times["fused"], times["base"]), "same run"));
    results.Add(("**LoRA fused-kernel step / default step**", Timing.Ratio(times["fused"], times["lora"]), "same run"));
    results.Add(("full fine-tuning step / frozen-base step", Timing.Ratio(times["full"], times["base"]), "same run"));
}

// 2. Inference: merged LoRA model vs the plain model (no PEFT code at all), and unmerged for reference.
if (!initOnly && !methodsOnly)
{
    using var lora = new LoRAStack();
    using var plain = new PlainStack();
    CopyBase(lora, plain);
    RandomizeAdapters(lora);
    lora.eval();
    plain.eval();
    using var x = randn(8 * 128, LoRAStack.Hidden);
    using var merged = new LoRAStack();
    CopyBase(merged, plain);
    CopyAdapters(lora, merged);
    merged.eval();
    merged.Merge();

    void Run(nn.Module<Tensor, Tensor> m)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        m.call(x);
    }
    var times = Timing.Interleaved(rounds * 2, ("plain", () => Run(plain)), ("merged", () => Run(merged)), ("unmerged", () => Run(lora)));
    results.Add(("plain inference (no_grad)", Timing.Ms(times["plain"]), "median"));
    results.Add(("**merged LoRA inference / plain inference**", Timing.Ratio(times["merged"], times["plain"]), "same run"));
    results.Add(("unmerged LoRA inference / plain inference", Timing.Ratio(times["unmerged"], times["plain"]), "same run"));
}

// 3. Kronecker: the structured adapter path vs forming the full 1024x1024 delta weight (what PEFT does).
if (!initOnly && !methodsOnly)
{
    using var layer = new KroneckerLayer();
    RandomizeAdapters(layer);
    var adapter = (KroneckerAdapter)layer.Projection.Adapters.Single();
    using var x = randn(8 * 128, LoRAStack.Hidden);
    using var y0 = zeros(8 * 128, LoRAStack.Hidden);

    void Structured()
    {
        using var scope = NewDisposeScope();
        var y = y0.clone();
        var input = x.detach().requires_grad_(true);
        adapter.AddTo(input, y);
        y.sum().backward();
    }
    void Dense()
    {
        using var scope = NewDisposeScope();
        var input = x.detach().requires_grad_(true);
        var delta = adapter.DeltaWeight(); // scaling * kron(W1, W2), the full out x in matrix
        var y = y0 + nn.functional.linear(input, delta);
        y.sum().backward();
    }
    var times = Timing.Interleaved(rounds * 2, ("structured", Structured), ("dense", Dense));
    results.Add(("Kronecker structured adapter fwd+bwd", Timing.Ms(times["structured"]), "median"));
    results.Add(("Kronecker full-dW adapter fwd+bwd", Timing.Ms(times["dense"]), "median"));
    results.Add(("**Kronecker structured / full dW**", Timing.Ratio(times["structured"], times["dense"]), "same run"));
}

// 6. Every method of the methods table (Methods.cs) on the four-layer stack: its training step (AdamW) against LoRA r=8's
//    and against the frozen base's forward + backward, interleaved in one run.
if (!initOnly)
{
    using var plain = new AdaptableStack();
    foreach (var p in plain.parameters()) p.requires_grad = false;
    using var x = randn(8 * 128, LoRAStack.Hidden);
    var steps = new List<(string Name, Action Step)>();
    var owned = new List<IDisposable>();
    steps.Add(("base", () =>
    {
        using var scope = NewDisposeScope();
        var input = x.detach().requires_grad_(true);
        plain.call(input).square().mean().backward();
    }));
    var methods = BenchmarkedMethods.All.Select(m => (m.Name, m.Options, m.Targets, Quantize: (QuantizationFormat?)null))
        .Concat(BenchmarkedMethods.QuantizedBases.Select(q => (q.Name, (PeftAdapterOptions)BenchmarkedMethods.All[0].Options, BenchmarkedMethods.All[0].Targets, Quantize: (QuantizationFormat?)q.Format)))
        .ToList();
    foreach (var (name, options, targets, quantize) in methods)
    {
        var model = new AdaptableStack();
        model.ApplyTargets(new PeftTargets(targets, options));
        if (quantize is { } format) model.QuantizeBase(format);
        RandomizeAdapters(model);
        var optimizer = optim.AdamW(model.TrainableParameters().ToList(), 1e-4);
        owned.Add(model);
        owned.Add(optimizer);
        void Step()
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var input = x.detach().requires_grad_(true);
            model.call(input).square().mean().backward();
            optimizer.step();
        }
        steps.Add((name, Step));
        if (name == "DoRA r=8") steps.Add(($"{name} (fused kernel)", Fused(Step)));
    }

    steps.Add((SelectiveProbe.Id3Name, SelectiveProbe.Id3Step(x, owned)));
    steps.Add((SelectiveProbe.SptName, SelectiveProbe.SptStep(x, owned, out var sptSummary)));
    var times = Timing.Interleaved(rounds, steps.ToArray());
    results.AddRange(SelectiveProbe.Lines(times, sptSummary));
    foreach (var (name, _, _, _) in methods)
    {
        results.Add(($"{name} training step, 4x (LayerNorm, Linear(1024,1024)), 1024 rows", Timing.Ms(times[name]), "median"));
        if (name != "LoRA r=8") results.Add(($"**{name} step / LoRA r=8 step**", Timing.Ratio(times[name], times["LoRA r=8"]), "same run"));
        results.Add(($"{name} step / frozen-base step", Timing.Ratio(times[name], times["base"]), "same run"));
        if (times.TryGetValue($"{name} (fused kernel)", out var fused))
        {
            results.Add(($"{name} step, fused kernel / LoRA r=8 step", Timing.Ratio(fused, times["LoRA r=8"]), "same run"));
            results.Add(($"**{name} fused-kernel step / default step**", Timing.Ratio(fused, times[name]), "same run"));
        }
    }

    foreach (var d in owned) d.Dispose();
}

// 7. The initialisations that rewrite the base (PiSSA, OLoRA, LoftQ, CorDA) on one 1024 x 1024 float32 weight: the one-time
//    cost of creating the adapter (factors and residual), full SVD vs randomized SVD (niter 4) vs QR vs LoftQ's quantize + SVD
//    alternations vs CorDA's decomposition against an input covariance (and that covariance's own cost), r = 8; and EVA's
//    data step (incremental PCA of four layers' inputs, Eva.cs).
if (!methodsOnly) results.AddRange(InitializationProbe.Results(rounds));

// 5. A Llama-layout decoder (hidden 512, 4 layers, SwiGLU 1376, 8 heads / 4 kv heads, vocabulary 4096, untied head),
//    4 sequences of 128 tokens, next-token cross-entropy, AdamW: LoRA r=8 on q/v (PEFT's default targets, LlamaTargets.LoRA),
//    LoRA r=8 on all 28 linear layers ("all-linear"), both by configuration targeting, and full fine-tuning; inference
//    plain vs merged.
if (!initOnly && !methodsOnly)
{
    var config = new Peft.Models.Llama.LlamaConfig
    {
        VocabSize = 4096, HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = 4, NumAttentionHeads = 8,
        NumKeyValueHeads = 4, MaxPositionEmbeddings = 256,
    };
    manual_seed(1);
    using var qv = new Peft.Models.Llama.LlamaForCausalLM(config);
    qv.ApplyTargets(new PeftTargets(Peft.Models.Llama.LlamaTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
    manual_seed(1);
    using var allLinear = new Peft.Models.Llama.LlamaForCausalLM(config);
    allLinear.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 8, Alpha: 16)));
    manual_seed(1);
    using var full = new Peft.Models.Llama.LlamaForCausalLM(config);
    foreach (var p in full.parameters()) p.requires_grad = true;
    manual_seed(1);
    using var frozen = new Peft.Models.Llama.LlamaForCausalLM(config);
    foreach (var (name, p) in frozen.named_parameters()) p.requires_grad = name == "model.embed_tokens.weight";
    using var qvOpt = optim.AdamW(qv.TrainableParameters().ToList(), 1e-4);
    using var allOpt = optim.AdamW(allLinear.TrainableParameters().ToList(), 1e-4);
    using var fullOpt = optim.AdamW(full.parameters().ToList(), 1e-4);
    using var ids = randint(0, config.VocabSize, new long[] { 4, 129 });
    using var inputs = ids.narrow(1, 0, 128);
    using var labels = ids.narrow(1, 1, 128).reshape(-1);

    Action Step(nn.Module<Tensor, Tensor> model, optim.Optimizer optimizer) => () =>
    {
        using var scope = NewDisposeScope();
        optimizer.zero_grad();
        var logits = model.call(inputs);
        var loss = nn.functional.cross_entropy(logits.reshape(-1, config.VocabSize), labels);
        loss.backward();
        optimizer.step();
    };

    void FrozenStep()
    {
        using var scope = NewDisposeScope();
        var logits = frozen.call(inputs);
        nn.functional.cross_entropy(logits.reshape(-1, config.VocabSize), labels).backward();
    }

    int llamaRounds = Math.Max(5, rounds / 2);
    var times = Timing.Interleaved(llamaRounds, ("qv", Step(qv, qvOpt)), ("all", Step(allLinear, allOpt)), ("allFused", Fused(Step(allLinear, allOpt))),
        ("full", Step(full, fullOpt)), ("frozen", FrozenStep));
    long baseParameters = full.parameters().Sum(p => p.numel());
    results.Add(($"Llama-layout decoder ({baseParameters / 1e6:F1} M parameters), 4x128 tokens: LoRA r=8 q/v step ({qv.GetTrainableSummary().TrainableParameters:N0} trainable)", Timing.Ms(times["qv"]), $"median of {llamaRounds}"));
    results.Add(($"LoRA r=8 all-linear step ({allLinear.GetTrainableSummary().TrainableParameters:N0} trainable)", Timing.Ms(times["all"]), $"median of {llamaRounds}"));
    results.Add(("full fine-tuning step", Timing.Ms(times["full"]), $"median of {llamaRounds}"));
    results.Add(("frozen-base step (fwd+bwd to the embeddings, no optimizer)", Timing.Ms(times["frozen"]), $"median of {llamaRounds}"));
    results.Add(("**Llama LoRA all-linear step / frozen-base step**", Timing.Ratio(times["all"], times["frozen"]), "same run"));
    results.Add(("Llama LoRA q/v step / frozen-base step", Timing.Ratio(times["qv"], times["frozen"]), "same run"));
    results.Add(("Llama LoRA all-linear step, fused kernel / frozen-base step", Timing.Ratio(times["allFused"], times["frozen"]), "same run"));
    results.Add(("**Llama LoRA q/v step / full fine-tuning step**", Timing.Ratio(times["qv"], times["full"]), "same run"));
    results.Add(("**Llama LoRA all-linear step / full fine-tuning step**", Timing.Ratio(times["all"], times["full"]), "same run"));

    RandomizeAdapters(allLinear);
    allLinear.eval();
    qv.eval();
    allLinear.Merge();
    void Plain()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var off = qv.DisableAdapters();
        qv.call(inputs);
    }
    void Merged()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        allLinear.call(inputs);
    }
    var inference = Timing.Interleaved(rounds, ("plain", Plain), ("merged", Merged));
    results.Add(("Llama plain inference (no_grad)", Timing.Ms(inference["plain"]), "median"));
    results.Add(("**Llama merged all-linear LoRA inference / plain inference**", Timing.Ratio(inference["merged"], inference["plain"]), "same run"));
}

// 4. Peak memory of a training run: LoRA vs full fine-tuning (separate processes; peak RSS from /proc).
if (!initOnly && !methodsOnly)
{
    long lora = MemoryProbe.Measure("lora");
    long full = MemoryProbe.Measure("full");
    results.Add(("peak RSS, LoRA r=8 training (8x Linear(1024,1024))", $"{lora / 1024.0 / 1024.0:F0} MiB", "separate process"));
    results.Add(("peak RSS, full fine-tuning (same model)", $"{full / 1024.0 / 1024.0:F0} MiB", "separate process"));
    results.Add(("**LoRA peak / full fine-tuning peak**", $"{(double)lora / full:F2}", "same run"));
}

// 8. Layer freezing (Telly): embeddings + 6 of 8 blocks frozen against full fine-tuning, and the frozen bottom run under
//    no_grad (ITransformerStack's gradient-free prefix) against the same freezing with the prefix's graph kept.
if (!initOnly && !methodsOnly) results.AddRange(FreezingProbe.Results(rounds));

// 9. Bottleneck adapters inserted after the sub-layers of a transformer stack (ITransformerBlock) against LoRA r=8 on
//    every linear layer of the same stack.
if (!initOnly && !methodsOnly) results.AddRange(BottleneckProbe.Results(rounds));

// 10. Prefix tuning and the MAM adapter inside attention (AttentionInsertions) against LoRA r=8 on q_proj and v_proj of
//     the same Llama.
if (!initOnly && !methodsOnly) results.AddRange(PrefixProbe.Results(rounds));

// 11. MEFT (reversible adapters): peak activation memory of a training step against LoRA r=8 q/v on the Llama-layout
//     decoder at 2, 4 and 8 layers (one process per configuration, RSS with a fixed mmap threshold; Meft.cs).
if (!initOnly && !methodsOnly) results.AddRange(MeftProbe.Results());

// 12. The prompt methods (prompt tuning, DePT, P-tuning) on the input embedding of a transformer stack against LoRA r=8 on every
//     linear layer of the same stack.
if (!initOnly && !methodsOnly) results.AddRange(PromptProbe.Results(rounds));

// 13. Methods inside attention (AttentionInsertions): the adaption prompt and LoFiT's two stages against LoRA r=8 on
//     q_proj/v_proj of the same 4-block stack with real attention.
if (!initOnly && !methodsOnly) results.AddRange(AttentionProbe.Results(rounds));

// 14. Sibling projections (q/k/v, gate/up) run as one product against the same layers run separately (Siblings.cs).
if (!initOnly && !methodsOnly) results.AddRange(SiblingProbe.Results(rounds));

// 15. What code specialised to one declared LoRA could save: the general layer against the same forward written out by hand.
if (!initOnly && !methodsOnly) results.AddRange(DispatchProbe.Results(rounds));

report.AppendLine("| measurement | value | note |");
report.AppendLine("| --- | --- | --- |");
foreach (var (name, value, note) in results) report.AppendLine($"| {name} | {value} | {note} |");
string machine = Machine.Describe();
Console.WriteLine();
Console.WriteLine(machine);
Console.WriteLine(report);
if (output is not null)
{
    Peft.Checkpoints.AtomicFile.WriteAllText(output, Machine.Document(machine, report.ToString(), rounds));
    Console.WriteLine($"wrote {output}");
}
return 0;
