using System.Diagnostics;
using System.Globalization;
using Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Benchmarks;

/// <summary>One pre-norm feed-forward block, <c>x + fc2(gelu(fc1(norm(x))))</c>, hidden 512, inner 2048.</summary>
public sealed class FreezableBlock : Module<Tensor, Tensor>
{
    public const int Hidden = 512;

    private readonly Module<Tensor, Tensor> norm = LayerNorm(Hidden);
    private readonly Module<Tensor, Tensor> fc1 = Linear(Hidden, 4 * Hidden);
    private readonly Module<Tensor, Tensor> fc2 = Linear(4 * Hidden, Hidden);

    public FreezableBlock() : base(nameof(FreezableBlock)) => RegisterComponents();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return (x + fc2.call(functional.gelu(fc1.call(norm.call(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>A user's own stack offering <see cref="ITransformerStack"/>: embedding (4096 x 512), 8 blocks, a 512 x 512 head.</summary>
public sealed class FreezableStack : Module<Tensor, Tensor>, ITransformerStack
{
    public const int Depth = 8;

    private readonly Embedding embed = Embedding(4096, FreezableBlock.Hidden);
    private readonly ModuleList<FreezableBlock> blocks = new(Enumerable.Range(0, Depth).Select(_ => new FreezableBlock()).ToArray());
    private readonly Module<Tensor, Tensor> head = Linear(FreezableBlock.Hidden, FreezableBlock.Hidden);

    public FreezableStack() : base(nameof(FreezableStack)) => RegisterComponents();

    public IReadOnlyList<nn.Module> EmbeddingModules => [embed];

    public IReadOnlyList<nn.Module> Blocks => blocks.Cast<nn.Module>().ToArray();

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        int frozen = this.GradientFreeBlocks();
        Tensor x;
        using (TransformerStacks.NoGradPrefix(frozen)) x = embed.call(ids);
        for (int i = 0; i < blocks.Count; i++)
        {
            using (TransformerStacks.NoGradPrefix(frozen - i)) x = blocks[i].call(x);
        }

        return head.call(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Telly-style freezing (embeddings + bottom 6 of 8 blocks) against full fine-tuning, with the gradient-free prefix on and off:
/// AdamW steps on 8 x 128 tokens, step time interleaved in one process, peak RSS in one child process per variant.
/// </summary>
internal static class FreezingProbe
{
    public static readonly string[] Modes = { "full", "telly6", "telly6-graph" };

    /// <summary>The results lines (section 8 of the benchmark, or <c>--freezing</c> alone).</summary>
    public static IEnumerable<(string Name, string Value, string Note)> Results(int rounds)
    {
        var steps = Modes.Select(m => (m, Build(m))).ToList();
        var times = Timing.Interleaved(rounds, steps.Select(s => (s.m, s.Item2.Step)).ToArray());
        foreach (var (_, built) in steps) built.Dispose();
        var peak = Modes.ToDictionary(m => m, Measure);
        foreach (var mode in Modes)
        {
            yield return ($"{Describe(mode)} training step, 8 x (LayerNorm, 512-2048-512), 1024 tokens", Timing.Ms(times[mode]), "median");
            yield return ($"peak RSS, {Describe(mode)}", $"{peak[mode] / 1024.0 / 1024.0:F0} MiB", "separate process");
        }

        yield return ("**Telly-6 step / full fine-tuning step**", Timing.Ratio(times["telly6"], times["full"]), "same run");
        yield return ("**Telly-6 step, no_grad prefix / graph kept**", Timing.Ratio(times["telly6"], times["telly6-graph"]), "same run");
        yield return ("**Telly-6 peak / full fine-tuning peak**", $"{(double)peak["telly6"] / peak["full"]:F2}", "same run");
        yield return ("**Telly-6 peak, no_grad prefix / graph kept**", $"{(double)peak["telly6"] / peak["telly6-graph"]:F2}", "same run");
    }

    /// <summary>Runs one variant for a few steps in this process and prints its peak RSS (child-process entry point).</summary>
    public static int Run(string mode)
    {
        using var built = Build(mode);
        for (int i = 0; i < 5; i++) built.Step();
        Console.WriteLine($"peak-rss-bytes {MemoryProbe.PeakRss()}");
        return 0;
    }

    private static string Describe(string mode) => mode switch
    {
        "full" => "full fine-tuning",
        "telly6" => "Telly-6 (embeddings + 6 bottom blocks frozen, no_grad prefix)",
        _ => "Telly-6 with the prefix's graph kept (TransformerStacks.GradientFreePrefix off)",
    };

    private static long Measure(string mode)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!, $"\"{typeof(FreezingProbe).Assembly.Location}\" --freezing-probe {mode}")
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) != "dotnet") start.Arguments = $"--freezing-probe {mode}";
        using var process = Process.Start(start)!;
        string text = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("peak-rss-bytes ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"freezing probe '{mode}' printed no result:\n{text}");
        return long.Parse(line["peak-rss-bytes ".Length..].Trim(), CultureInfo.InvariantCulture);
    }

    private static Built Build(string mode)
    {
        manual_seed(0);
        var model = new FreezableStack();
        if (mode != "full") model.FreezeLayers(new LayerFreezing(bottom: 6));
        var optimizer = optim.AdamW(model.parameters().Where(p => p.requires_grad).ToList(), 1e-4);
        var ids = randint(0, 4096, new long[] { 8, 128 });
        bool keepGraph = mode == "telly6-graph";
        return new Built(model, optimizer, ids, () =>
        {
            using var scope = NewDisposeScope();
            bool saved = TransformerStacks.GradientFreePrefix;
            TransformerStacks.GradientFreePrefix = !keepGraph;
            try
            {
                optimizer.zero_grad();
                model.call(ids).square().mean().backward();
                optimizer.step();
            }
            finally
            {
                TransformerStacks.GradientFreePrefix = saved;
            }
        });
    }

    private sealed record Built(FreezableStack Model, optim.Optimizer Optimizer, Tensor Ids, Action Step) : IDisposable
    {
        public void Dispose()
        {
            Optimizer.Dispose();
            Model.Dispose();
            Ids.Dispose();
        }
    }
}
