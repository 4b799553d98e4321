using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Peft;
using Peft.Benchmarks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>Interleaved timing of variants and the figures the report prints.</summary>
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
