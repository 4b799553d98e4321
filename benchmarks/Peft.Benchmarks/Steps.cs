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

/// <summary>Helpers the timed steps share.</summary>
internal static class Steps
{
    // The same step through the fused low-rank kernel (PeftKernels.FusedPaths on while it runs).
    public static Action Fused(Action step) => () =>
    {
        PeftKernels.FusedPaths = true;
        try { step(); }
        finally { PeftKernels.FusedPaths = false; }
    };

    public static void CopyBase(nn.Module target, nn.Module source)
    {
        using var _ = no_grad();
        var sourceParams = source.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in target.named_parameters())
        {
            if (sourceParams.TryGetValue(name, out var value)) parameter.copy_(value);
        }
    }

    public static void RandomizeAdapters(nn.Module model)
    {
        using var _ = no_grad();
        foreach (var p in model.AdapterParameters()) p.add_(randn_like(p) * 0.02); // around the init: scales stay near 1
    }

    public static void CopyAdapters(nn.Module source, nn.Module target)
    {
        using var _ = no_grad();
        foreach (var (s, t) in source.AdapterParameters().Zip(target.AdapterParameters())) t.copy_(s);
    }
}
