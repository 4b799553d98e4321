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

/// <summary>
/// 7. The initialisations that rewrite the base (PiSSA, OLoRA, LoftQ, CorDA) on one 1024 x 1024 float32 weight: the one-time
/// cost of creating the adapter (factors and residual), full SVD vs randomized SVD (niter 4) vs QR vs LoftQ's quantize + SVD
/// alternations vs CorDA's decomposition against an input covariance (and that covariance's own cost), r = 8; and EVA's
/// data step (incremental PCA of four layers' inputs, Eva.cs).
/// </summary>
internal static class InitializationProbe
{
    /// <summary>The section's lines.</summary>
    /// <param name="rounds">Timed rounds.</param>
    public static List<(string Name, string Value, string Note)> Results(int rounds)
    {
        var results = new List<(string Name, string Value, string Note)>();

        using var weight = randn(1024, 1024);
        using var a = zeros(8, 1024);
        using var b = zeros(1024, 8);
        var variants = BenchmarkedMethods.BaseInitializations.Select(v => (v.Name, (Action)(() =>
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            LoRABaseInitialization.Apply(v.Options, weight.clone(), a, b);
        }))).ToArray();
        var times = Timing.Interleaved(Math.Max(3, rounds / 3), variants);
        foreach (var (name, _) in BenchmarkedMethods.BaseInitializations)
        {
            results.Add(($"{name} initialisation, r=8, one 1024x1024 weight", Timing.Ms(times[name]), "median"));
        }
        results.Add(("**PiSSA full SVD / niter=4 initialisation**", Timing.Ratio(times["PiSSA full SVD"], times["PiSSA niter=4"]), "same run"));
        results.Add(("**LoftQ NF4 iter=1 / PiSSA full SVD initialisation**", Timing.Ratio(times["LoftQ NF4 iter=1"], times["PiSSA full SVD"]), "same run"));

        // CorDA: the covariance of 16 calibration calls of 256 rows (PEFT's per-call XᵀX over |max X|), then the decomposition
        // against it; PiSSA's full SVD again in the same interleaving for the ratio.
        var calls = Enumerable.Range(0, 16).Select(i => randn(256, 1024)).ToArray();
        Tensor Covariance()
        {
            var sum = zeros(1024, 1024);
            foreach (var x in calls)
            {
                using var product = CorDAInitialization.CallCovariance(x, useFloat16: false, "bench");
                sum.add_(product);
            }

            return sum.div_(calls.Length);
        }

        using var covariance = Covariance();
        var corda = BenchmarkedMethods.CorDAInitializations.Select(v => (v.Name, (Action)(() =>
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var eigens = CorDAInitialization.Eigens(weight, covariance, v.Options.Rank, v.Options.CorDAMethod, "bench");
            var (ca, cb) = CorDAInitialization.Factors(eigens, v.Options.Scaling);
            var residual = weight - cb.matmul(ca).mul_(v.Options.Scaling);
        }))).Append(("CorDA covariance, 16 calls x 256 rows", (Action)(() =>
        {
            using var noGrad = no_grad();
            using var c = Covariance();
        }))).Append((BenchmarkedMethods.BaseInitializations[0].Name, variants[0].Item2)).ToArray();
        var cordaTimes = Timing.Interleaved(Math.Max(3, rounds / 3), corda);
        foreach (var (name, _) in BenchmarkedMethods.CorDAInitializations)
        {
            results.Add(($"{name} initialisation (decomposition), r=8, one 1024x1024 weight", Timing.Ms(cordaTimes[name]), "median"));
        }

        results.Add(("CorDA covariance, 16 calls x 256 rows, in 1024", Timing.Ms(cordaTimes["CorDA covariance, 16 calls x 256 rows"]), "median"));
        results.Add(("**CorDA IPM / PiSSA full SVD initialisation**", Timing.Ratio(cordaTimes["CorDA IPM"], cordaTimes["PiSSA full SVD"]), "same run"));
        foreach (var x in calls) x.Dispose();

        // EVA: the data step on the four-layer stack (Eva.cs), against creating the same stack with plain LoRA.
        var eva = Timing.Interleaved(Math.Max(3, rounds / 3), EvaProbe.Variants());
        results.Add(($"{EvaProbe.Name} initialisation, incl. creating the stack; {EvaProbe.LastPasses} forward passes", Timing.Ms(eva[EvaProbe.Name]), "median"));
        results.Add(($"{EvaProbe.Baseline}", Timing.Ms(eva[EvaProbe.Baseline]), "median"));
        results.Add(("**EVA r=8 initialisation / creating the LoRA stack**", Timing.Ratio(eva[EvaProbe.Name], eva[EvaProbe.Baseline]), "same run"));
        return results;
    }
}
