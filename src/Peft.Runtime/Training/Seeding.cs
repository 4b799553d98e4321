using TorchSharp;

namespace Peft.Training;

/// <summary>Seeds TorchSharp's global random number generators for reproducible runs.</summary>
public static class Seeding
{
    /// <summary>
    /// Seeds the default CPU generator (<c>torch.manual_seed</c>) and, when CUDA is available, every CUDA device's
    /// generator (<c>torch.cuda.manual_seed_all</c>). After this call random initialization, dropout and sampling
    /// repeat exactly on the same machine with the same TorchSharp/libtorch build and thread count.
    /// </summary>
    /// <remarks>
    /// The generators are process-wide: code running concurrently on other threads that draws random numbers shifts
    /// the sequence. TorchSharp 0.107 exposes no deterministic-algorithm switches (<c>torch.use_deterministic_algorithms</c>
    /// is marked not implemented and cuDNN's <c>deterministic</c>/<c>benchmark</c> flags are absent), so this method
    /// cannot turn them on: CUDA kernels that reduce with atomics may still differ in the last bits between runs.
    /// CPU training with the same thread count is reproducible bit for bit.
    /// </remarks>
    /// <param name="seed">The seed; any value, negative ones included.</param>
    public static void SetSeed(int seed)
    {
        torch.manual_seed(seed);
        if (torch.cuda.is_available())
        {
            torch.cuda.manual_seed_all(seed);
        }
    }
}
