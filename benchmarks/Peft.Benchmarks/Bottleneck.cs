using Peft;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Benchmarks;

/// <summary>One pre-norm block with both insertion points: <c>h = x + proj(norm1(x))</c> (a 512 x 512 projection stands in
/// for attention), then <c>h + fc2(gelu(fc1(norm2(h))))</c>, hidden 512, inner 2048.</summary>
[Adaptable]
public sealed partial class InsertionBlock : Module<Tensor, Tensor>, ITransformerBlock
{
    public const int Hidden = 512;

    private Module<Tensor, Tensor> norm1 = LayerNorm(Hidden);
    private Module<Tensor, Tensor> proj = Linear(Hidden, Hidden);
    private Module<Tensor, Tensor> norm2 = LayerNorm(Hidden);
    private Module<Tensor, Tensor> fc1 = Linear(Hidden, 4 * Hidden);
    private Module<Tensor, Tensor> fc2 = Linear(4 * Hidden, Hidden);

    public InsertionBlock() : base(nameof(InsertionBlock))
    {
        InitializePeft();
        Insertions = new BlockInsertions(this, Hidden, Hidden, Hidden, Hidden);
    }

    public BlockInsertions Insertions { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + Insertions.AfterAttention(x, proj.call(norm1.call(x)));
        return (h + Insertions.AfterFeedForward(h, fc2.call(functional.gelu(fc1.call(norm2.call(h)))))).MoveToOuterDisposeScope();
    }
}

/// <summary>A stack of 4 <see cref="InsertionBlock"/>s over a 4096 x 512 embedding.</summary>
public sealed class InsertionStack : Module<Tensor, Tensor>, ITransformerStack
{
    private readonly Embedding embed = Embedding(4096, InsertionBlock.Hidden);
    private readonly ModuleList<InsertionBlock> blocks = new(Enumerable.Range(0, 4).Select(_ => new InsertionBlock()).ToArray());

    public InsertionStack() : base(nameof(InsertionStack)) => RegisterComponents();

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
/// Bottleneck adapters (Houlsby, Pfeiffer, scaled parallel, Compacter, Compacter++) against LoRA r=8 on every linear layer of
/// the same transformer stack: AdamW training steps on 8 x 128 tokens, interleaved in one process (section 9, or
/// <c>--bottleneck</c> alone). Compacter runs twice: with its PHM layers' automatic path (the factored product at these
/// shapes) and with H formed, the choice <see cref="PhmLayer.FactoredIsCheaper"/> makes.
/// </summary>
internal static class BottleneckProbe
{
    private const string FormedH = "Compacter rf=32, H formed";

    private static readonly (string Name, BottleneckConfig? Config, PhmPath Path)[] Variants =
    {
        ("LoRA r=8 (all linear)", null, PhmPath.Auto),
        ("Houlsby rf=16", BottleneckConfig.Houlsby(), PhmPath.Auto),
        ("Pfeiffer rf=16", BottleneckConfig.Pfeiffer(), PhmPath.Auto),
        ("scaled parallel rf=2", BottleneckConfig.ScaledParallel(), PhmPath.Auto),
        ("Compacter rf=32", BottleneckConfig.Compacter(), PhmPath.Auto),
        (FormedH, BottleneckConfig.Compacter(), PhmPath.Dense),
        ("Compacter++ rf=32", BottleneckConfig.CompacterPlusPlus(), PhmPath.Auto),
    };

    public static IEnumerable<(string Name, string Value, string Note)> Results(int rounds)
    {
        var built = Variants.Select(v => (v.Name, Step: Build(v.Config, v.Path))).ToList();
        var times = Timing.Interleaved(rounds, built.Select(b => (b.Name, b.Step.Run)).ToArray());
        foreach (var (name, step) in built)
        {
            yield return ($"{name} training step, 4 x (proj 512, FFN 512-2048-512), 1024 tokens ({step.Trainable:N0} trainable)", Timing.Ms(times[name]), "median");
            step.Dispose();
        }

        foreach (var (name, _, _) in Variants.Skip(1))
        {
            yield return ($"**{name} step / LoRA r=8 step**", Timing.Ratio(times[name], times[Variants[0].Name]), "same run");
        }

        yield return ("**Compacter step, automatic PHM path / H formed**", Timing.Ratio(times["Compacter rf=32"], times[FormedH]), "same run");
    }

    private static Step Build(BottleneckConfig? config, PhmPath path)
    {
        manual_seed(0);
        var model = new InsertionStack();
        if (config is null) model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 8, Alpha: 16)));
        else
        {
            foreach (var (_, adapter) in model.AddBottleneckAdapters(config))
            {
                if (!config.PhmLayer) continue;
                adapter.PhmDown.Path = path;
                adapter.PhmUp.Path = path;
            }
        }

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

    private sealed record Step(InsertionStack Model, optim.Optimizer Optimizer, Tensor Ids, long Trainable, Action Run) : IDisposable
    {
        public void Dispose()
        {
            Optimizer.Dispose();
            Model.Dispose();
            Ids.Dispose();
        }
    }
}
