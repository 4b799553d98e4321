using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// The LoRA initialisations that rewrite the base weight (<see cref="LoRAInit.PiSSA"/>, <see cref="LoRAInit.OLoRA"/>,
/// <see cref="LoRAInit.LoftQ"/>): their PEFT names and the one step they share, <c>A, B ← factors(W)</c> then
/// <c>W ← W − s·B A</c> (LoftQ: <c>W ← Q</c>, its quantized weight), computed in float32 (float64 for a float64 layer) as PEFT
/// does, with the residual cast back to the weight's dtype.
/// </summary>
public static class LoRABaseInitialization
{
    /// <summary>Whether the initialisation rewrites the base weight.</summary>
    /// <param name="init">The initialisation.</param>
    /// <returns>True for PiSSA, OLoRA, LoftQ and CorDA.</returns>
    public static bool RewritesBase(LoRAInit init) => init is LoRAInit.PiSSA or LoRAInit.OLoRA or LoRAInit.LoftQ or LoRAInit.CorDA;

    /// <summary>PEFT's <c>init_lora_weights</c> value: <c>"pissa"</c>, <c>"pissa_niter_K"</c>, <c>"olora"</c>, <c>"loftq"</c> or <c>"corda"</c> (null for the
    /// initialisations that do not rewrite the base).</summary>
    /// <param name="init">The initialisation.</param>
    /// <param name="pissaIterations">PiSSA's power iterations (0: full SVD).</param>
    /// <returns>The value, or null.</returns>
    public static string? PeftName(LoRAInit init, int pissaIterations) => init switch
    {
        LoRAInit.PiSSA when pissaIterations == 0 => "pissa",
        LoRAInit.PiSSA => $"pissa_niter_{pissaIterations}",
        LoRAInit.OLoRA => "olora",
        LoRAInit.LoftQ => "loftq",
        LoRAInit.CorDA => "corda",
        _ => null,
    };

    /// <summary>Sets <paramref name="a"/> and <paramref name="b"/> from <paramref name="weight"/> and writes the residual
    /// <c>W − s·B A</c> into <paramref name="weight"/> in place (call under no_grad); LoftQ writes its dequantized <c>Q</c>
    /// instead and returns the quantized one.</summary>
    /// <param name="options">The LoRA options (initialisation, rank, scaling).</param>
    /// <param name="weight">The base weight <c>[out, in]</c>, rewritten in place.</param>
    /// <param name="a">The adapter's A <c>[r, in]</c>.</param>
    /// <param name="b">The adapter's B <c>[out, r]</c>.</param>
    /// <returns>LoftQ's quantized base (the caller owns its buffers), or null for the other initialisations.</returns>
    public static QuantizedWeight? Apply(LoRAOptions options, Tensor weight, Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        using var scope = NewDisposeScope();
        var compute = weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var w = weight.to(compute);
        if (options.Init == LoRAInit.LoftQ)
        {
            var (la, lb, q, quantized) = LoftQInitialization.Run(w, options.Rank, options.Scaling, options.LoftQFormat, options.LoftQIterations);
            a.copy_(la);
            b.copy_(lb);
            weight.copy_(q);
            foreach (var buffer in quantized.Buffers.Values) buffer.MoveToOuterDisposeScope();
            return quantized;
        }

        var (fa, fb) = options.Init switch
        {
            LoRAInit.PiSSA => PissaInitialization.Factors(w, options.Rank, options.Scaling, options.PissaIterations),
            LoRAInit.OLoRA => OloraInitialization.Factors(w, options.Rank),
            _ => throw new InvalidOperationException($"{options.Init} does not rewrite the base weight from the weight alone (CorDA's factors come from CorDAInitialization)."),
        };
        var part = fb.matmul(fa).mul_(options.Scaling);
        var residual = w.sub(part);
        a.copy_(fa);
        b.copy_(fb);
        weight.copy_(residual);
        return null;
    }
}
