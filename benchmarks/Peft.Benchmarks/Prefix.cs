using Peft;
using Peft.Models.Llama;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Methods inside attention (prefix tuning, with and without PEFT's MLP, and the MAM adapter) against LoRA r=8 on PEFT's
/// default Llama targets (q_proj, v_proj): AdamW training steps of a 4-layer Llama (hidden 512, 8 heads, FFN 1376, vocab
/// 4096) on 8 x 128 tokens, interleaved in one process (section 10, or <c>--prefix</c> alone).
/// </summary>
internal static class PrefixProbe
{
    private static readonly (string Name, Action<nn.Module> Apply)[] Variants =
    {
        ("LoRA r=8 (q_proj, v_proj)", m => m.ApplyTargets(new PeftTargets(LlamaTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)))),
        ("prefix 20", m => m.AddPrefixTuning(new PrefixTuningConfig(20))),
        ("prefix 20, MLP 512", m => m.AddPrefixTuning(new PrefixTuningConfig(20, Projection: true, EncoderHiddenSize: 512))),
        ("MAM (prefix 30 MLP 800 + parallel rf 2)", m => m.AddMamAdapter()),
    };

    public static IEnumerable<(string Name, string Value, string Note)> Results(int rounds)
    {
        var built = Variants.Select(v => (v.Name, Step: Build(v.Apply))).ToList();
        var times = Timing.Interleaved(rounds, built.Select(b => (b.Name, b.Step.Run)).ToArray());
        foreach (var (name, step) in built)
        {
            yield return ($"{name} training step, Llama 4 x 512 (8 heads, FFN 1376), 8 x 128 tokens ({step.Trainable:N0} trainable)", Timing.Ms(times[name]), "median");
            step.Dispose();
        }

        foreach (var (name, _) in Variants.Skip(1))
        {
            yield return ($"**{name} step / LoRA r=8 step**", Timing.Ratio(times[name], times[Variants[0].Name]), "same run");
        }
    }

    private static Step Build(Action<nn.Module> apply)
    {
        manual_seed(0);
        var model = new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = 4096, HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = 4, NumAttentionHeads = 8, MaxPositionEmbeddings = 512,
        });
        apply(model);
        var trainable = model.TrainableParameters().ToList();
        var optimizer = optim.AdamW(trainable, 1e-4);
        var ids = randint(0, 4096, new long[] { 8, 128 });
        return new Step(model, optimizer, ids, trainable.Sum(p => p.numel()), () =>
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            model.call(ids).square().mean().backward();
            optimizer.step();
        });
    }

    private sealed record Step(LlamaForCausalLM Model, optim.Optimizer Optimizer, Tensor Ids, long Trainable, Action Run) : IDisposable
    {
        public void Dispose()
        {
            Optimizer.Dispose();
            Model.Dispose();
            Ids.Dispose();
        }
    }
}
