using Peft;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Benchmarks;

/// <summary>The stack of <see cref="InsertionStack"/> with its 4096 x 512 embedding as an adaptable member, so prompt methods
/// (prompt tuning, DePT, P-tuning) can be put on it by configuration.</summary>
[Adaptable]
public sealed partial class PromptStack : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> embed = Embedding(4096, InsertionBlock.Hidden);
    private ModuleList<InsertionBlock> blocks = new(Enumerable.Range(0, 4).Select(_ => new InsertionBlock()).ToArray());

    public PromptStack() : base(nameof(PromptStack)) => InitializePeft();

    /// <summary>The input embedding, where the prompt methods go.</summary>
    public static TargetModules Embedding { get; } = TargetModules.Names("embed");

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var x = embed.call(ids);
        foreach (var block in blocks) x = block.call(x);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The prompt methods against LoRA r=8 on every linear layer of the same transformer stack (<see cref="PromptStack"/>): AdamW
/// training steps on 8 x 128 tokens, interleaved in one process (section 10, or <c>--prompts</c> alone). DePT's table covers
/// the 128 positions; every prompt lengthens the sequence the blocks see, and P-tuning's encoder runs once per step.
/// </summary>
internal static class PromptProbe
{
    private static readonly (string Name, PeftAdapterOptions Options, TargetModules Targets)[] Variants =
    {
        ("LoRA r=8 (all linear)", new LoRAOptions(Rank: 8, Alpha: 16), TargetModules.AllLinear),
        ("prompt tuning V=20", new PromptTuningOptions(VirtualTokens: 20), PromptStack.Embedding),
        ("DePT V=10, r=8 table over 128 positions", new DePTOptions(VirtualTokens: 10, MaxLength: 128, Rank: 8, Alpha: 8), PromptStack.Embedding),
        ("P-tuning V=20, MLP encoder h=512", new PTuningOptions(VirtualTokens: 20), PromptStack.Embedding),
    };

    public static IEnumerable<(string Name, string Value, string Note)> Results(int rounds)
    {
        var built = Variants.Select(v => (v.Name, Step: Build(v.Options, v.Targets))).ToList();
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

        yield return ($"**{Variants[2].Name} step / {Variants[1].Name} step**", Timing.Ratio(times[Variants[2].Name], times[Variants[1].Name]), "same run");
        yield return ($"**{Variants[3].Name} step / {Variants[1].Name} step**", Timing.Ratio(times[Variants[3].Name], times[Variants[1].Name]), "same run");
    }

    private static Step Build(PeftAdapterOptions options, TargetModules targets)
    {
        manual_seed(0);
        var model = new PromptStack();
        model.ApplyTargets(new PeftTargets(targets, options));
        var trainable = model.TrainableParameters().ToList();
        using (no_grad())
        {
            foreach (var p in trainable) p.add_(randn(p.shape) * 0.01);
        }

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

    private sealed record Step(PromptStack Model, optim.Optimizer Optimizer, Tensor Ids, long Trainable, Action Run) : IDisposable
    {
        public void Dispose()
        {
            Optimizer.Dispose();
            Model.Dispose();
            Ids.Dispose();
        }
    }
}
