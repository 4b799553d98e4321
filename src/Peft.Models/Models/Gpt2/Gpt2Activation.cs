using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Gpt2;

/// <summary>
/// The activations transformers' <c>ACT2FN</c> maps GPT-2's <c>activation_function</c> names to, with its formulas.
/// </summary>
public static class Gpt2Activation
{
    /// <summary>Applies the activation named <paramref name="name"/> (one of <see cref="Gpt2Config.SupportedActivations"/>).</summary>
    /// <param name="name">
    /// "gelu_new" / "gelu_pytorch_tanh" / "gelu_fast": <c>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c>;
    /// "gelu": exact <c>x·Φ(x)</c> (erf); "quick_gelu": <c>x·sigmoid(1.702·x)</c>; "relu", "silu"/"swish", "tanh",
    /// "sigmoid"; "linear": identity.
    /// </param>
    /// <param name="x">The input.</param>
    /// <exception cref="ArgumentException">An unknown name.</exception>
    public static Tensor Apply(string name, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        var y = name switch
        {
            "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => GeluTanh(x),
            "gelu" => functional.gelu(x),
            "quick_gelu" => x * functional.sigmoid(x * 1.702),
            "relu" => functional.relu(x),
            "silu" or "swish" => functional.silu(x),
            "tanh" => x.tanh(),
            "sigmoid" => x.sigmoid(),
            "linear" => x.alias(),
            _ => throw new ArgumentException($"activation_function \"{name}\" is not supported (supported: {string.Join(", ", Gpt2Config.SupportedActivations)}).", nameof(name)),
        };
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>transformers' <c>NewGELUActivation</c>: <c>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c>.</summary>
    /// <param name="x">The input.</param>
    public static Tensor GeluTanh(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        var inner = (x + x.pow(3) * 0.044715) * Math.Sqrt(2.0 / Math.PI);
        return (x * 0.5 * (inner.tanh() + 1.0)).MoveToOuterDisposeScope();
    }
}
