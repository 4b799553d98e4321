using static TorchSharp.torch;

namespace Peft;

/// <summary>Chooses where tensors live: CUDA when the TorchSharp-cuda backend is present and sees a GPU, else the CPU.</summary>
public static class PeftDevice
{
    /// <summary>CUDA when available (build with <c>-p:PeftTorchBackend=cuda</c>), otherwise the CPU.</summary>
    public static Device Default => cuda.is_available() ? CUDA : CPU;
}
