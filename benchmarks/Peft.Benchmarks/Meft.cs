using System.Globalization;
using Peft;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Section 10 (<c>--meft</c>): peak activation memory of one training step of MEFT₁ against LoRA r=8 on q/v (PEFT's default
/// Llama targets) on the Llama-layout decoder of section 5 (hidden 512, SwiGLU 1376, 8 heads / 4 kv heads, vocabulary 4096)
/// at 2, 4 and 8 layers, 4 x 128 tokens, next-token cross-entropy; plus MEFT₁ with <c>num_rev_layers = 0</c> (the same
/// function with ordinary backpropagation) to show what the reversible backward itself saves.
/// </summary>
/// <remarks>
/// The measure (<see cref="StepMemory"/>): each configuration runs in its own process (<c>--step-memory MODE:LAYERS</c>) which first sets glibc's mmap
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
            var lora = StepMemory.Measure("lora", layers);
            var meft = StepMemory.Measure("meft", layers);
            var plain = StepMemory.Measure("meft-plain", layers);
            yield return ($"Llama-layout, {layers} layers, 4x128 tokens: step activation peak, LoRA r=8 q/v / MEFT1 / MEFT1 with num_rev_layers=0",
                $"{Mb(lora.Peak)} / {Mb(meft.Peak)} / {Mb(plain.Peak)}", "peak RSS over the step minus the step's baseline (one process each)");
            yield return ($"Llama-layout, {layers} layers: held for the backward at the end of the forward, LoRA / MEFT1 / MEFT1 num_rev_layers=0",
                $"{Mb(lora.Held)} / {Mb(meft.Held)} / {Mb(plain.Held)}", "RSS after the forward minus the baseline");
            yield return ($"**Llama-layout, {layers} layers: MEFT1 activation peak / LoRA's**", Ratio(meft.Peak, lora.Peak), "goal <= 0.6x at 8 layers");
            yield return ($"Llama-layout, {layers} layers: MEFT1 activation peak / MEFT1 with ordinary backpropagation", Ratio(meft.Peak, plain.Peak), "what the reversible backward saves");
        }
    }

    private static string Mb(long bytes) => $"{bytes / 1048576.0:F1} MiB";

    private static string Ratio(long a, long b) => b <= 0 ? "n/a" : $"{(double)a / b:F2}x";
}
