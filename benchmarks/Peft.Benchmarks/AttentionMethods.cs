using Peft;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Benchmarks;

/// <summary>One pre-norm block whose attention offers the attention insertion points: 8 heads of 64 over hidden 512
/// (<c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>, causal), then a 512-2048-512 GELU feed-forward.</summary>
[Adaptable]
public sealed partial class AttentionBlock : Module<Tensor, Tensor>, ITransformerBlock
{
    private const int Heads = 8;
    private const int HeadDim = InsertionBlock.Hidden / Heads;

    private Module<Tensor, Tensor> norm1 = LayerNorm(InsertionBlock.Hidden);
    private Module<Tensor, Tensor> q_proj = Linear(InsertionBlock.Hidden, InsertionBlock.Hidden, hasBias: false);
    private Module<Tensor, Tensor> k_proj = Linear(InsertionBlock.Hidden, InsertionBlock.Hidden, hasBias: false);
    private Module<Tensor, Tensor> v_proj = Linear(InsertionBlock.Hidden, InsertionBlock.Hidden, hasBias: false);
    private Module<Tensor, Tensor> o_proj = Linear(InsertionBlock.Hidden, InsertionBlock.Hidden, hasBias: false);
    private Module<Tensor, Tensor> norm2 = LayerNorm(InsertionBlock.Hidden);
    private Module<Tensor, Tensor> fc1 = Linear(InsertionBlock.Hidden, 4 * InsertionBlock.Hidden);
    private Module<Tensor, Tensor> fc2 = Linear(4 * InsertionBlock.Hidden, InsertionBlock.Hidden);

    public AttentionBlock(int layer) : base(nameof(AttentionBlock))
    {
        InitializePeft();
        Attention = new AttentionInsertions(this, new AttentionGeometry(layer, Heads, Heads, HeadDim, InsertionBlock.Hidden)) { OutputProjection = () => o_proj };
        Insertions = new BlockInsertions(this, InsertionBlock.Hidden, InsertionBlock.Hidden, InsertionBlock.Hidden, InsertionBlock.Hidden) { Attention = Attention };
    }

    public AttentionInsertions Attention { get; }

    public BlockInsertions Insertions { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var n = norm1.call(x);
        var q = Split(q_proj.call(n));
        var (k, v) = Attention.PrependPrefix(Split(k_proj.call(n)), Split(v_proj.call(n)));
        var heads = Attention.AdjustHeads(functional.scaled_dot_product_attention(q, k, v, is_casual: true), q, h => (Split(k_proj.call(h)), Split(v_proj.call(h))));
        var h = x + o_proj.call(heads.transpose(1, 2).reshape(x.shape[0], x.shape[1], InsertionBlock.Hidden));
        return (h + fc2.call(functional.gelu(fc1.call(norm2.call(h))))).MoveToOuterDisposeScope();
    }

    private static Tensor Split(Tensor t) => t.view(t.shape[0], t.shape[1], Heads, HeadDim).transpose(1, 2);
}

/// <summary>A stack of 4 <see cref="AttentionBlock"/>s over a 4096 x 512 embedding.</summary>
public sealed class AttentionStack : Module<Tensor, Tensor>, ITransformerStack
{
    private readonly Embedding embed = Embedding(4096, InsertionBlock.Hidden);
    private readonly ModuleList<AttentionBlock> blocks = new(Enumerable.Range(0, 4).Select(i => new AttentionBlock(i)).ToArray());

    public AttentionStack() : base(nameof(AttentionStack)) => RegisterComponents();

    public IReadOnlyList<nn.Module> EmbeddingModules => [embed];

    public IReadOnlyList<nn.Module> Blocks => blocks.Cast<nn.Module>().ToArray();

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var x = embed.call(ids);
        foreach (var block in blocks) x = block.call(x);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Methods inside attention (the adaption prompt, LoFiT's two stages) against LoRA r=8 on q_proj/v_proj of the same 4-block stack: AdamW training
/// steps on 8 x 128 tokens, interleaved in one process (section 10, or <c>--attention</c> alone).
/// </summary>
internal static class AttentionProbe
{
    private static readonly (string Name, Action<AttentionStack> Apply)[] Variants =
    {
        ("LoRA r=8 (q_proj, v_proj)", m => m.ApplyTargets(new PeftTargets(TargetModules.FromPeft(null, ["q_proj", "v_proj"]), new LoRAOptions(Rank: 8, Alpha: 16)))),
        ("adaption prompt len 10 (4 layers)", m => m.AddAdaptionPrompt(new AdaptionPromptConfig(AdapterLen: 10, AdapterLayers: 4))),
        ("LoFiT stage 1: scales on all 32 heads + L1", m => m.AddLoFiT(new LoFiTConfig(LoFiTComponents.Scale, L1Lambda: 5e-3))),
        ("LoFiT stage 2: offsets on the top 10% (3 heads)", m =>
        {
            m.AddLoFiT(new LoFiTConfig(LoFiTComponents.Scale), adapterName: "scales");
            var heads = m.SelectHeads(LoFiTConfig.DefaultHeadFraction, "scales");
            m.DeleteAdapter("scales");
            m.AddLoFiT(new LoFiTConfig(LoFiTComponents.Bias), heads);
        }),
    };

    public static IEnumerable<(string Name, string Value, string Note)> Results(int rounds)
    {
        var built = Variants.Select(v => (v.Name, Step: Build(v.Apply))).ToList();
        var times = Timing.Interleaved(rounds, built.Select(b => (b.Name, b.Step.Run)).ToArray());
        foreach (var (name, step) in built)
        {
            yield return ($"{name} training step, 4 x (attention 8 x 64, FFN 512-2048-512), 1024 tokens ({step.Trainable:N0} trainable)", Timing.Ms(times[name]), "median");
            step.Dispose();
        }

        foreach (var (name, _) in Variants.Skip(1))
        {
            yield return ($"**{name} step / LoRA r=8 (q, v) step**", Timing.Ratio(times[name], times[Variants[0].Name]), "same run");
        }
    }

    private static Step Build(Action<AttentionStack> apply)
    {
        manual_seed(0);
        var model = new AttentionStack();
        apply(model);
        if (model.InsertedAdapters().Any())
        {
            // A trained gate: at zero the prompt's gradient vanishes and the step would understate the method's work.
            using var _ = no_grad();
            foreach (var adapter in model.InsertedAdapters().Select(a => a.Adapter).OfType<AdaptionPromptAdapter>()) adapter.Gate.fill_(0.1);
        }

        var trainable = model.TrainableParameters().ToList();
        var optimizer = optim.AdamW(trainable, 1e-4);
        bool lossTerms = model.InsertedAdapters().Any(a => a.Adapter is ILossTermAdapter);   // LoFiT stage 1's L1, as its training adds it
        var ids = randint(0, 4096, new long[] { 8, 128 });
        return new Step(model, optimizer, ids, trainable.Sum(p => p.numel()), () =>
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = model.call(ids).square().mean();
            if (lossTerms) loss = loss + model.AdapterLossTerm();
            loss.backward();
            optimizer.step();
        });
    }

    private sealed record Step(AttentionStack Model, optim.Optimizer Optimizer, Tensor Ids, long Trainable, Action Run) : IDisposable
    {
        public void Dispose()
        {
            Optimizer.Dispose();
            Model.Dispose();
            Ids.Dispose();
        }
    }
}
