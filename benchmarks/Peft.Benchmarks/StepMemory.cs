using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Peft;
using Peft.Models.Llama;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Peak activation memory of one training step of the Llama-layout decoder (hidden 512, SwiGLU 1376, 8 heads / 4 kv heads,
/// vocabulary 4096, 4 x 128 tokens), one configuration per child process (<c>--step-memory MODE:LAYERS</c>). The child
/// first sets glibc's mmap threshold to 64 KiB, so the resident set follows the live tensor bytes; after two warm-up steps
/// it reads VmRSS (the baseline), resets the peak, runs one forward (VmRSS again: held for the backward) and the backward,
/// and reads VmHWM. Modes: <c>lora</c> (r=8 on q/v), <c>meft</c> and <c>meft-plain</c> (MEFT₁, with and without the
/// reversible backward), <c>lora-all</c> (r=8 on all linear layers), <c>lora-all-fused</c> (the same with
/// <see cref="PeftKernels.FusedPaths"/>) and <c>lora-all-siblings</c> (the same with q/k/v and gate/up linked,
/// <see cref="SiblingProjectionExtensions.FuseSiblingProjections"/>).
/// </summary>
internal static class StepMemory
{
    /// <summary>One configuration in a child process: (peak, held) in bytes.</summary>
    public static (long Peak, long Held) Measure(string mode, int layers)
    {
        string arg = $"--step-memory {mode}:{layers}";
        var start = new ProcessStartInfo(Environment.ProcessPath!, $"\"{typeof(StepMemory).Assembly.Location}\" {arg}")
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) != "dotnet") start.Arguments = arg;
        using var process = Process.Start(start)!;
        string text = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("step-memory ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"step-memory probe '{mode}:{layers}' printed no result:\n{text}");
        var parts = line.Split(' ');
        return (long.Parse(parts[1], CultureInfo.InvariantCulture), long.Parse(parts[2], CultureInfo.InvariantCulture));
    }

    /// <summary>The child process: measures one configuration and prints <c>step-memory PEAK HELD</c>.</summary>
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
        Configure(model, mode);
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
        Console.WriteLine($"step-memory {peak} {held}");
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

    private static void Configure(LlamaForCausalLM model, string mode)
    {
        var lora = new LoRAOptions(Rank: 8, Alpha: 16);
        switch (mode)
        {
            case "lora": model.ApplyTargets(new PeftTargets(LlamaTargets.LoRA, lora)); break;
            case "meft": model.AddMeft(new MeftConfig(AdapterBottleneckDim: 8)); break;
            case "meft-plain": model.AddMeft(new MeftConfig(AdapterBottleneckDim: 8, NumRevLayers: 0)); break;
            case "lora-all" or "lora-all-fused" or "lora-all-siblings":
                model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, lora));
                PeftKernels.FusedPaths = mode == "lora-all-fused";
                if (mode == "lora-all-siblings") model.FuseSiblingProjections();
                break;
            default: throw new ArgumentException($"unknown step-memory mode '{mode}'", nameof(mode));
        }
    }
}
