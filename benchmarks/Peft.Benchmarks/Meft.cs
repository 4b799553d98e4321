using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Peft;
using Peft.Models.Llama;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Section 10 (<c>--meft</c>): peak activation memory of one training step of MEFT₁ against LoRA r=8 on q/v (PEFT's default
/// Llama targets) on the Llama-layout decoder of section 5 (hidden 512, SwiGLU 1376, 8 heads / 4 kv heads, vocabulary 4096)
/// at 2, 4 and 8 layers, 4 x 128 tokens, next-token cross-entropy; plus MEFT₁ with <c>num_rev_layers = 0</c> (the same
/// function with ordinary backpropagation) to show what the reversible backward itself saves.
/// </summary>
/// <remarks>
/// The measure: each configuration runs in its own process (<c>--meft-probe MODE:LAYERS</c>) which first sets glibc's mmap
/// threshold to 64 KiB (<c>mallopt(M_MMAP_THRESHOLD)</c>, which also stops glibc from raising it), so every tensor buffer
/// over 64 KiB is its own mapping and returns to the system when freed: the resident set then follows the live tensor bytes.
/// After two warm-up steps (gradients allocated), it reads VmRSS (the baseline: weights, gradients, libtorch), resets the
/// peak (<c>/proc/self/clear_refs</c> = 5), runs one forward (VmRSS again: what the step holds for its backward) and the
/// backward, and reads VmHWM (the peak). Reported: peak − baseline (peak activation memory of the step, logits and the
/// loss included, the same for every configuration) and after-forward − baseline (held for the backward). No optimizer
/// step is measured (its state is the same order for both and is not activation memory).
/// </remarks>
internal static class MeftProbe
{
    private static readonly int[] s_depths = [2, 4, 8];

    public static IEnumerable<(string Name, string Value, string Note)> Results()
    {
        foreach (int layers in s_depths)
        {
            var lora = Measure("lora", layers);
            var meft = Measure("meft", layers);
            var plain = Measure("meft-plain", layers);
            yield return ($"Llama-layout, {layers} layers, 4x128 tokens: step activation peak, LoRA r=8 q/v / MEFT1 / MEFT1 with num_rev_layers=0",
                $"{Mb(lora.Peak)} / {Mb(meft.Peak)} / {Mb(plain.Peak)}", "peak RSS over the step minus the step's baseline (one process each)");
            yield return ($"Llama-layout, {layers} layers: held for the backward at the end of the forward, LoRA / MEFT1 / MEFT1 num_rev_layers=0",
                $"{Mb(lora.Held)} / {Mb(meft.Held)} / {Mb(plain.Held)}", "RSS after the forward minus the baseline");
            yield return ($"**Llama-layout, {layers} layers: MEFT1 activation peak / LoRA's**", Ratio(meft.Peak, lora.Peak), "goal <= 0.6x at 8 layers");
            yield return ($"Llama-layout, {layers} layers: MEFT1 activation peak / MEFT1 with ordinary backpropagation", Ratio(meft.Peak, plain.Peak), "what the reversible backward saves");
        }
    }

    /// <summary>One configuration in a child process: (peak, held) in bytes.</summary>
    private static (long Peak, long Held) Measure(string mode, int layers)
    {
        string arg = $"--meft-probe {mode}:{layers}";
        var start = new ProcessStartInfo(Environment.ProcessPath!, $"\"{typeof(MeftProbe).Assembly.Location}\" {arg}")
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) != "dotnet") start.Arguments = arg;
        using var process = Process.Start(start)!;
        string text = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("meft-probe ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"MEFT probe '{mode}:{layers}' printed no result:\n{text}");
        var parts = line.Split(' ');
        return (long.Parse(parts[1], CultureInfo.InvariantCulture), long.Parse(parts[2], CultureInfo.InvariantCulture));
    }

    /// <summary>The child process: measures one configuration and prints <c>meft-probe PEAK HELD</c>.</summary>
    public static int Run(string spec)
    {
        var (mode, layers) = (spec.Split(':')[0], int.Parse(spec.Split(':')[1], CultureInfo.InvariantCulture));
        _ = mallopt(MmapThreshold, 64 * 1024);
        var config = new LlamaConfig
        {
            VocabSize = 4096, HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = layers, NumAttentionHeads = 8,
            NumKeyValueHeads = 4, MaxPositionEmbeddings = 256,
        };
        manual_seed(1);
        using var model = new LlamaForCausalLM(config);
        if (mode == "lora") model.ApplyTargets(new PeftTargets(LlamaTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        else model.AddMeft(new MeftConfig(AdapterBottleneckDim: 8, NumRevLayers: mode == "meft" ? null : 0));
        model.train();
        using var ids = randint(0, config.VocabSize, new long[] { 4, 129 });
        using var inputs = ids.narrow(1, 0, 128);
        using var labels = ids.narrow(1, 1, 128).reshape(-1);
        Tensor Loss() => nn.functional.cross_entropy(model.call(inputs).reshape(-1, config.VocabSize), labels);
        for (int warm = 0; warm < 2; warm++)
        {
            using var scope = NewDisposeScope();
            Loss().backward();
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        long baseline = Rss("VmRSS:");
        File.WriteAllText("/proc/self/clear_refs", "5");
        long held;
        using (var scope = NewDisposeScope())
        {
            var loss = Loss();
            held = Rss("VmRSS:") - baseline;
            loss.backward();
        }

        long peak = Rss("VmHWM:") - baseline;
        Console.WriteLine($"meft-probe {peak} {held}");
        return 0;
    }

    private const int MmapThreshold = -3;

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code; this signature marshals trivially.
    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);
#pragma warning restore SYSLIB1054

    private static long Rss(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Replace("kB", "", StringComparison.Ordinal).Trim(), CultureInfo.InvariantCulture) * 1024;
        }

        throw new InvalidOperationException($"/proc/self/status has no {field}");
    }

    private static string Mb(long bytes) => $"{bytes / 1048576.0:F1} MiB";

    private static string Ratio(long a, long b) => b <= 0 ? "n/a" : $"{(double)a / b:F2}x";
}
