namespace Peft;

/// <summary>Process-wide switches for the fused layer kernels.</summary>
public static class PeftKernels
{
    /// <summary>
    /// When true, a linear layer whose only live adapter is low-rank (LoRA, or DoRA without training-time dropout) runs as
    /// one autograd node with its own backward (<c>LowRankLinearFunction</c>: no gradient formed for a frozen weight, the
    /// input gradient accumulated in place, the rank-sized products in the layouts the BLAS is fast at). False (the default)
    /// runs every layer through the general per-capability path, whose backward is autograd's. Both compute the same
    /// function (tested to 1e-10 in float64).
    /// </summary>
    /// <remarks>
    /// Off by default because it did not win where it could be measured (2 cores, TorchSharp 0.107, CPU; docs/benchmarks.md):
    /// one 1024 x 1024 layer, 1024 rows, 400 interleaved rounds: LoRA 24.5 ms against 24.0 ms, DoRA 27.9 against 26.7.
    /// TorchSharp's custom-function node allocates an untouched copy of each output, and the step then takes about 900 more
    /// page faults (LoRA; 2,500 for DoRA) than the general path's 40; with glibc's trimming turned off the two paths are
    /// equal. Turn it on to compare on other hardware.
    /// </remarks>
    public static bool FusedPaths { get; set; }
}
