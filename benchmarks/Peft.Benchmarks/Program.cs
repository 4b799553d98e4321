using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Peft;
using Peft.Benchmarks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

// Peft benchmarks. Every comparison is measured in one process and one run, with the variants interleaved
// round by round, and reported as a ratio of medians: these machines are noisy, ratios are what carries over.
//   dotnet run -c Release --project benchmarks/Peft.Benchmarks -- [--rounds N] [--output docs/benchmarks.md]
// Internal: --memory lora|full runs one training configuration and prints its peak resident memory; --freezing-probe MODE
// likewise for layer freezing (Freezing.cs); --freezing runs section 8 (layer freezing) alone and prints its lines;
// --init-only times only section 7 (PiSSA/OLoRA/LoftQ/CorDA initialisation, EVA's data step); --methods-only runs only section 6 (every method's step
// against LoRA's and the frozen base's), the table a new method joins; --selective runs section 6's ID3 and SPT lines
// alone (against LoRA r=8 and the frozen base, Selective.cs); --bottleneck runs section 9 (bottleneck adapters) alone;
// --prefix runs section 10 (prefix tuning and MAM inside attention) alone;
// --meft runs section 11 (MEFT's activation memory against LoRA, Meft.cs) alone; --meft-probe MODE:LAYERS is its child process;
// --prompts runs section 12 (prompt tuning, DePT and P-tuning against LoRA on a transformer stack) alone;
// --attention runs section 13 (methods inside attention: the adaption prompt, LoFiT) alone.

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

int rounds = 15;
string? output = null;
string? memoryMode = null;
string? freezingMode = null;
bool freezingOnly = false;
bool initOnly = false;
bool methodsOnly = false;
bool selectiveOnly = false;
bool bottleneckOnly = false;
bool prefixOnly = false;
bool meftOnly = false;
string? meftProbe = null;
bool promptsOnly = false;
bool attentionOnly = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--output": output = args[++i]; break;
        case "--memory": memoryMode = args[++i]; break;
        case "--freezing-probe": freezingMode = args[++i]; break;
        case "--freezing": freezingOnly = true; break;
        case "--init-only": initOnly = true; break;
        case "--methods-only": methodsOnly = true; break;
        case "--selective": selectiveOnly = true; break;
        case "--bottleneck": bottleneckOnly = true; break;
        case "--prefix": prefixOnly = true; break;
        case "--meft": meftOnly = true; break;
        case "--meft-probe": meftProbe = args[++i]; break;
        case "--prompts": promptsOnly = true; break;
        case "--attention": attentionOnly = true; break;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
}

if (memoryMode is not null) return MemoryProbe.Run(memoryMode);
if (meftProbe is not null) return MeftProbe.Run(meftProbe);
if (meftOnly)
{
    foreach (var (name, value, note) in MeftProbe.Results()) Console.WriteLine($"| {name} | {value} | {note} |");
    return 0;
}

if (freezingMode is not null) return FreezingProbe.Run(freezingMode);
if (selectiveOnly)
{
    foreach (var (name, value, note) in SelectiveProbe.Results(rounds)) Console.WriteLine($"| {name} | {value} | {note} |");
    return 0;
}

if (promptsOnly)
{
    foreach (var (name, value, note) in PromptProbe.Results(rounds)) Console.WriteLine($"| {name} | {value} | {note} |");
    return 0;
}

if (bottleneckOnly)
{
    foreach (var (name, value, note) in BottleneckProbe.Results(rounds)) Console.WriteLine($"| {name} | {value} | {note} |");
    return 0;
}

if (attentionOnly)
{
    foreach (var (name, value, note) in AttentionProbe.Results(rounds)) Console.WriteLine($"| {name} | {value} | {note} |");
    return 0;
}

if (prefixOnly)
{
    foreach (var (name, value, note) in PrefixProbe.Results(rounds)) Console.WriteLine($"| {name} | {value} | {note} |");
    return 0;
}

if (freezingOnly)
{
    foreach (var (name, value, note) in FreezingProbe.Results(rounds)) Console.WriteLine($"| {name} | {value} | {note} |");
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
if (!methodsOnly)
{
    using var weight = randn(1024, 1024);
    using var a = zeros(8, 1024);
    using var b = zeros(1024, 8);
    var variants = BenchmarkedMethods.BaseInitializations.Select(v => (v.Name, (Action)(() =>
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        LoRABaseInitialization.Apply(v.Options, weight.clone(), a, b);
    }))).ToArray();
    var times = Timing.Interleaved(Math.Max(3, rounds / 3), variants);
    foreach (var (name, _) in BenchmarkedMethods.BaseInitializations)
    {
        results.Add(($"{name} initialisation, r=8, one 1024x1024 weight", Timing.Ms(times[name]), "median"));
    }
    results.Add(("**PiSSA full SVD / niter=4 initialisation**", Timing.Ratio(times["PiSSA full SVD"], times["PiSSA niter=4"]), "same run"));
    results.Add(("**LoftQ NF4 iter=1 / PiSSA full SVD initialisation**", Timing.Ratio(times["LoftQ NF4 iter=1"], times["PiSSA full SVD"]), "same run"));

    // CorDA: the covariance of 16 calibration calls of 256 rows (PEFT's per-call XᵀX over |max X|), then the decomposition
    // against it; PiSSA's full SVD again in the same interleaving for the ratio.
    var calls = Enumerable.Range(0, 16).Select(i => randn(256, 1024)).ToArray();
    Tensor Covariance()
    {
        var sum = zeros(1024, 1024);
        foreach (var x in calls)
        {
            using var product = CorDAInitialization.CallCovariance(x, useFloat16: false, "bench");
            sum.add_(product);
        }

        return sum.div_(calls.Length);
    }

    using var covariance = Covariance();
    var corda = BenchmarkedMethods.CorDAInitializations.Select(v => (v.Name, (Action)(() =>
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var eigens = CorDAInitialization.Eigens(weight, covariance, v.Options.Rank, v.Options.CorDAMethod, "bench");
        var (ca, cb) = CorDAInitialization.Factors(eigens, v.Options.Scaling);
        var residual = weight - cb.matmul(ca).mul_(v.Options.Scaling);
    }))).Append(("CorDA covariance, 16 calls x 256 rows", (Action)(() =>
    {
        using var noGrad = no_grad();
        using var c = Covariance();
    }))).Append((BenchmarkedMethods.BaseInitializations[0].Name, variants[0].Item2)).ToArray();
    var cordaTimes = Timing.Interleaved(Math.Max(3, rounds / 3), corda);
    foreach (var (name, _) in BenchmarkedMethods.CorDAInitializations)
    {
        results.Add(($"{name} initialisation (decomposition), r=8, one 1024x1024 weight", Timing.Ms(cordaTimes[name]), "median"));
    }

    results.Add(("CorDA covariance, 16 calls x 256 rows, in 1024", Timing.Ms(cordaTimes["CorDA covariance, 16 calls x 256 rows"]), "median"));
    results.Add(("**CorDA IPM / PiSSA full SVD initialisation**", Timing.Ratio(cordaTimes["CorDA IPM"], cordaTimes["PiSSA full SVD"]), "same run"));
    foreach (var x in calls) x.Dispose();

    // EVA: the data step on the four-layer stack (Eva.cs), against creating the same stack with plain LoRA.
    var eva = Timing.Interleaved(Math.Max(3, rounds / 3), EvaProbe.Variants());
    results.Add(($"{EvaProbe.Name} initialisation, incl. creating the stack; {EvaProbe.LastPasses} forward passes", Timing.Ms(eva[EvaProbe.Name]), "median"));
    results.Add(($"{EvaProbe.Baseline}", Timing.Ms(eva[EvaProbe.Baseline]), "median"));
    results.Add(("**EVA r=8 initialisation / creating the LoRA stack**", Timing.Ratio(eva[EvaProbe.Name], eva[EvaProbe.Baseline]), "same run"));
}

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

report.AppendLine("| measurement | value | note |");
report.AppendLine("| --- | --- | --- |");
foreach (var (name, value, note) in results) report.AppendLine($"| {name} | {value} | {note} |");
string machine = Machine.Describe();
Console.WriteLine();
Console.WriteLine(machine);
Console.WriteLine(report);
if (output is not null)
{
    File.WriteAllText(output, Machine.Document(machine, report.ToString(), rounds));
    Console.WriteLine($"wrote {output}");
}
return 0;

// The same step through the fused low-rank kernel (PeftKernels.FusedPaths on while it runs).
static Action Fused(Action step) => () =>
{
    PeftKernels.FusedPaths = true;
    try { step(); }
    finally { PeftKernels.FusedPaths = false; }
};

static void CopyBase(nn.Module target, nn.Module source)
{
    using var _ = no_grad();
    var sourceParams = source.named_parameters().ToDictionary(p => p.name, p => p.parameter);
    foreach (var (name, parameter) in target.named_parameters())
    {
        if (sourceParams.TryGetValue(name, out var value)) parameter.copy_(value);
    }
}

static void RandomizeAdapters(nn.Module model)
{
    using var _ = no_grad();
    foreach (var p in model.AdapterParameters()) p.add_(randn_like(p) * 0.02); // around the init: scales stay near 1
}

static void CopyAdapters(nn.Module source, nn.Module target)
{
    using var _ = no_grad();
    foreach (var (s, t) in source.AdapterParameters().Zip(target.AdapterParameters())) t.copy_(s);
}

internal static class Timing
{
    /// <summary>Runs each action once per round, in rotating order, after two warm-up rounds; returns sorted times.</summary>
    public static Dictionary<string, List<double>> Interleaved(int rounds, params (string Name, Action Run)[] variants)
    {
        var times = variants.ToDictionary(v => v.Name, _ => new List<double>());
        for (int round = -2; round < rounds; round++)
        {
            for (int k = 0; k < variants.Length; k++)
            {
                var (name, run) = variants[(k + Math.Max(round, 0)) % variants.Length];
                var sw = Stopwatch.StartNew();
                run();
                sw.Stop();
                if (round >= 0) times[name].Add(sw.Elapsed.TotalMilliseconds);
            }
        }
        foreach (var list in times.Values) list.Sort();
        return times;
    }

    public static double Median(List<double> sorted) => sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;

    public static string Ms(List<double> sorted) => $"{Median(sorted):F2} ms (min {sorted[0]:F2})";

    public static string Ratio(List<double> a, List<double> b) => $"{Median(a) / Median(b):F3}";
}

internal static class MemoryProbe
{
    private const int Layers = 8;

    public static long Measure(string mode)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!, $"\"{typeof(MemoryProbe).Assembly.Location}\" --memory {mode}")
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) != "dotnet") start.Arguments = $"--memory {mode}";
        using var process = Process.Start(start)!;
        string text = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("peak-rss-bytes ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"memory probe '{mode}' printed no result:\n{text}");
        return long.Parse(line["peak-rss-bytes ".Length..].Trim(), CultureInfo.InvariantCulture);
    }

    public static int Run(string mode)
    {
        manual_seed(0);
        var layers = Enumerable.Range(0, Layers).Select(_ => new LoRAStackLayer()).ToList();
        var parameters = new List<Parameter>();
        foreach (var layer in layers)
        {
            parameters.AddRange(mode == "lora" ? layer.TrainableParameters() : FullParameters(layer));
        }
        using var opt = optim.AdamW(parameters, 1e-4);
        using var x = randn(8 * 128, LoRAStack.Hidden);
        for (int step = 0; step < 5; step++)
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var h = x;
            foreach (var layer in layers) h = nn.functional.gelu(layer.call(h));
            h.square().mean().backward();
            opt.step();
        }
        Console.WriteLine($"peak-rss-bytes {PeakRss()}");
        return 0;
    }

    private static IEnumerable<Parameter> FullParameters(LoRAStackLayer layer)
    {
        // Full fine-tuning trains the base weights; the adapters are switched off for the whole run.
        layer.DisableAdapters();
        foreach (var p in layer.AdapterParameters()) p.requires_grad = false;
        var adapterSet = new HashSet<object>(layer.AdapterParameters(), ReferenceEqualityComparer.Instance);
        foreach (var p in layer.parameters())
        {
            if (adapterSet.Contains(p)) continue;
            p.requires_grad = true;
            yield return p;
        }
    }

    public static long PeakRss()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line["VmHWM:".Length..].Replace("kB", "").Trim(), CultureInfo.InvariantCulture) * 1024;
        }
        return Process.GetCurrentProcess().PeakWorkingSet64;
    }
}

internal static class Machine
{
    public static string Describe()
    {
        string cpu = "unknown CPU";
        if (File.Exists("/proc/cpuinfo"))
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        return $"machine: {cpu}, {Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, .NET {Environment.Version}, " +
               $"TorchSharp {typeof(torch).Assembly.GetName().Version}, libtorch threads {get_num_threads()}, date {DateTime.UtcNow:yyyy-MM-dd}";
    }

    public static string Document(string machine, string table, int rounds) => $"""
        # Benchmarks

        Measured by `dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --output docs/benchmarks.md`
        ({rounds} interleaved rounds after 2 warm-up rounds; medians; ratios from the same run).

        {machine}

        {table}
        Definitions:
        - frozen-base step: forward + backward through the plain layers (no PEFT code) with the input requiring
          gradients, so gradients cross every frozen layer as they must in LoRA training; no optimizer.
        - LoRA step: the same forward + backward through the adapted layers plus AdamW over the adapter parameters.
        - merged inference: `Merge()` folds ΔW into W; the wrapper then calls exactly the base `linear`.
        - Kronecker structured: the adapter path computed as W1·X·W2ᵀ on the reshaped input; full dW: forming
          scaling·kron(W1, W2) (1024x1024) and multiplying, which is what Hugging Face PEFT does.
        - peak RSS: VmHWM of a separate process running 5 training steps of 8 stacked Linear(1024,1024) layers.
        - Llama-layout decoder: `LlamaForCausalLM` (hidden 512, 4 layers, SwiGLU 1376, 8 query / 4 key-value heads,
          vocabulary 4096, untied head), 4 x 128 tokens, cross-entropy, forward + backward + AdamW. LoRA q/v is PEFT's
          default for Llama, `ApplyTargets(LlamaTargets.LoRA)`; all-linear is `ApplyTargets(TargetModules.AllLinear)` on
          all 28 projections; full fine-tuning trains every weight; its frozen-base step is forward + backward with only the
          token embeddings requiring gradients (so gradients cross every layer, as LoRA's must) and no optimizer.
          Inference: adapters disabled vs all-linear LoRA merged.
        - fused kernel: the same step with `PeftKernels.FusedPaths` on (one LoRA or DoRA per layer as a single autograd
          node with its own backward, `Core/Fused/LowRankLinearFunction.cs`); the default step uses the general path, whose
          backward is autograd's.
        - methods table (benchmarks/Peft.Benchmarks/Methods.cs): each method applied by configuration to a pre-norm stack of
          4 x (LayerNorm(1024), Linear(1024, 1024)) with GELU between, its adapter parameters moved off their init; its
          forward + backward + AdamW step against LoRA r=8's step and the frozen stack's forward + backward, interleaved in
          one run. Linear methods adapt the four Linear layers, LayerNorm tuning the four norms.
        """;
}
