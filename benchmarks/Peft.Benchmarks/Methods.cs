using Peft;

namespace Peft.Benchmarks;

/// <summary>
/// The methods the benchmark compares, one line each: a method joins with its options here. Each is applied to all four
/// layers of <see cref="AdaptableStack"/>; its training step is reported against LoRA r=8's and against the frozen base's,
/// in the same run.
/// </summary>
internal static class BenchmarkedMethods
{
    public static readonly (string Name, PeftAdapterOptions Options)[] All =
    {
        ("LoRA r=8", new LoRAOptions(Rank: 8, Alpha: 16)),
        ("LoKr r=8", new KroneckerOptions(Rank: 8, Alpha: 8)),
        ("DoRA r=8", new DoRAOptions(Rank: 8, Alpha: 16)),
        ("IA3", new IA3Options()),
    };
}
