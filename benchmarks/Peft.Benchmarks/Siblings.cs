using Peft;
using Peft.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>Three projections of one input, 3 x Linear(1024, 1024) (q/k/v of a 1024-wide attention), declared siblings.</summary>
public sealed class QkvBlock : nn.Module<Tensor, Tensor>, ISiblingProjections
{
    private static readonly IReadOnlyList<IReadOnlyList<string>> s_groups = [["q", "k", "v"]];
#pragma warning disable IDE1006 // named as the module's children
    private readonly nn.Module<Tensor, Tensor> q;
    private readonly nn.Module<Tensor, Tensor> k;
    private readonly nn.Module<Tensor, Tensor> v;
#pragma warning restore IDE1006

    public QkvBlock(PeftAdapterOptions? options) : base(nameof(QkvBlock))
    {
        q = Adapt(nn.Linear(1024, 1024), "q", options);
        k = Adapt(nn.Linear(1024, 1024), "k", options);
        v = Adapt(nn.Linear(1024, 1024), "v", options);
        RegisterComponents();
    }

    IReadOnlyList<IReadOnlyList<string>> ISiblingProjections.SiblingProjections => s_groups;

    public override Tensor forward(Tensor x) => q.call(x) + k.call(x) + v.call(x);

    private static nn.Module<Tensor, Tensor> Adapt(nn.Module<Tensor, Tensor> linear, string name, PeftAdapterOptions? options)
    {
        foreach (var p in linear.parameters()) p.requires_grad = false;
        return options is null ? linear : AdaptedLinear.Wrap(linear, name).WithAdapter("default", options);
    }
}

/// <summary>
/// Sibling projections run as one product (<see cref="SiblingProjectionExtensions.FuseSiblingProjections"/>) against the same
/// layers run separately (section 14, or <c>--siblings</c> alone): the Llama-layout decoder of section 5 with LoRA r=8 on all
/// linear layers (q/k/v and gate/up fused), its training step, its unmerged inference and its step activation peak (with the
/// fused kernel's too, <see cref="StepMemory"/>); and a 1024-wide q/k/v block, 1024 rows, forward + backward. Each timed
/// pair is two models built from one seed, interleaved in one run.
/// </summary>
internal static class SiblingProbe
{
    public static IEnumerable<(string Name, string Value, string Note)> Results(int rounds)
    {
        var config = new LlamaConfig
        {
            VocabSize = 4096, HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = 4, NumAttentionHeads = 8,
            NumKeyValueHeads = 4, MaxPositionEmbeddings = 256,
        };
        using var separate = Llama(config);
        using var fused = Llama(config);
        int groups = fused.FuseSiblingProjections().Linked.Count;
        using var attention = Llama(config);
        attention.FuseSiblingProjections((path, _) => path.EndsWith("self_attn", StringComparison.Ordinal));
        using var separateOpt = optim.AdamW(separate.TrainableParameters().ToList(), 1e-4);
        using var fusedOpt = optim.AdamW(fused.TrainableParameters().ToList(), 1e-4);
        using var attentionOpt = optim.AdamW(attention.TrainableParameters().ToList(), 1e-4);
        manual_seed(2);
        using var ids = randint(0, config.VocabSize, new long[] { 4, 129 });
        using var inputs = ids.narrow(1, 0, 128);
        using var labels = ids.narrow(1, 1, 128).reshape(-1);

        Action Step(LlamaForCausalLM model, optim.Optimizer optimizer) => () =>
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            nn.functional.cross_entropy(model.call(inputs).reshape(-1, config.VocabSize), labels).backward();
            optimizer.step();
        };

        Action Infer(LlamaForCausalLM model) => () =>
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            model.call(inputs);
        };

        int llamaRounds = Math.Max(5, rounds / 2);
        var steps = Timing.Interleaved(llamaRounds, ("separate", Step(separate, separateOpt)), ("fused", Step(fused, fusedOpt)), ("attention", Step(attention, attentionOpt)));
        var inference = Timing.Interleaved(rounds, ("separate", Infer(separate)), ("fused", Infer(fused)));
        yield return ($"Llama-layout decoder, LoRA r=8 all-linear, 4x128 tokens: training step, projections separate", Timing.Ms(steps["separate"]), $"median of {llamaRounds}");
        yield return ($"same, sibling projections fused ({groups} groups: q/k/v and gate/up of 4 layers)", Timing.Ms(steps["fused"]), $"median of {llamaRounds}");
        yield return ("**Llama all-linear LoRA step, siblings fused / separate**", Timing.Ratio(steps["fused"], steps["separate"]), "same run");
        yield return ("**Llama all-linear LoRA step, only q/k/v fused / separate**", Timing.Ratio(steps["attention"], steps["separate"]), "same run");
        yield return ("Llama all-linear LoRA unmerged inference (no_grad), separate", Timing.Ms(inference["separate"]), "median");
        yield return ("**Llama all-linear LoRA unmerged inference, siblings fused / separate**", Timing.Ratio(inference["fused"], inference["separate"]), "same run");

        var memory = new[] { "lora-all", "lora-all-fused", "lora-all-siblings" }.Select(mode => StepMemory.Measure(mode, 4)).ToArray();
        yield return ("Llama-layout decoder, 4 layers, all-linear LoRA r=8: step activation peak, separate / fused kernel / siblings fused",
            string.Join(" / ", memory.Select(m => $"{m.Peak / 1048576.0:F1}")) + " MiB", "peak RSS over the step minus its baseline (StepMemory, one process each)");
        yield return ("same: held for the backward at the end of the forward", string.Join(" / ", memory.Select(m => $"{m.Held / 1048576.0:F1}")) + " MiB", "RSS after the forward minus the baseline");

        var lora = new LoRAOptions(Rank: 8, Alpha: 16);
        manual_seed(3);
        using var alone = new QkvBlock(lora);
        manual_seed(3);
        using var together = new QkvBlock(lora);
        together.FuseSiblingProjections();
        manual_seed(3);
        using var frozen = new QkvBlock(null); // plain layers: the frozen base
        manual_seed(4);
        using var x0 = randn(1024, 1024);
        Action FwdBwd(QkvBlock block) => () =>
        {
            using var scope = NewDisposeScope();
            var x = x0.detach().requires_grad_(true);
            block.call(x).sum().backward();
        };

        var times = Timing.Interleaved(rounds, ("separate", FwdBwd(alone)), ("fused", FwdBwd(together)), ("frozen", FwdBwd(frozen)));
        yield return ("3 x Linear(1024, 1024) of one input, 1024 rows, fwd+bwd: LoRA r=8, separate", Timing.Ms(times["separate"]), "median");
        yield return ("same, siblings fused", Timing.Ms(times["fused"]), "median");
        yield return ("same, frozen base (plain layers)", Timing.Ms(times["frozen"]), "median");
        yield return ("**q/k/v LoRA fused / separate**", Timing.Ratio(times["fused"], times["separate"]), "same run");
        yield return ("q/k/v LoRA separate / frozen base", Timing.Ratio(times["separate"], times["frozen"]), "same run");
        yield return ("**q/k/v LoRA fused / frozen base**", Timing.Ratio(times["fused"], times["frozen"]), "same run");
    }

    private static LlamaForCausalLM Llama(LlamaConfig config)
    {
        manual_seed(1);
        var model = new LlamaForCausalLM(config);
        model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 8, Alpha: 16)));
        return model;
    }
}
