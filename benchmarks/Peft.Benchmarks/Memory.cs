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
