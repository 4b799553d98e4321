using static TorchSharp.torch;

namespace Peft;

/// <summary>The kinds of base layer an adapter wrapper exists for (<see cref="AdaptedLayer"/>); a method declares the
/// kinds it applies to (<see cref="PeftMethod.LayerKinds"/>).</summary>
[Flags]
public enum PeftLayerKind
{
    /// <summary>No layer kind.</summary>
    None = 0,

    /// <summary><c>TorchSharp.Modules.Linear</c>: <see cref="AdaptedLinear"/>.</summary>
    Linear = 1,

    /// <summary><c>TorchSharp.Modules.Embedding</c>: <see cref="AdaptedEmbedding"/>.</summary>
    Embedding = 2,

    /// <summary>A normalisation layer (<c>TorchSharp.Modules.LayerNorm</c> or an <see cref="IAdaptableNorm"/>): <see cref="AdaptedNorm"/>.</summary>
    Norm = 4,
}

/// <summary>
/// What an adapter is created for: the wrapped layer's kind and sizes, its parameters' device and dtype, and the member it
/// belongs to (for messages). Options create adapters from it (<see cref="PeftAdapterOptions.CreateAdapter"/>), so a method
/// needs no knowledge of the wrapper classes.
/// </summary>
/// <param name="Kind">The layer kind.</param>
/// <param name="InFeatures">Linear: in_features; Embedding: the vocabulary size; Norm: the normalised size.</param>
/// <param name="OutFeatures">Linear: out_features; Embedding: the embedding size; Norm: the normalised size.</param>
/// <param name="HasBias">Whether the base layer has a bias.</param>
/// <param name="Device">The device of the base weight.</param>
/// <param name="DType">The dtype of the base weight.</param>
/// <param name="MemberName">The member or module path the layer belongs to, for messages (optional).</param>
public sealed record PeftLayerInfo(
    PeftLayerKind Kind,
    long InFeatures,
    long OutFeatures,
    bool HasBias,
    Device Device,
    ScalarType DType,
    string? MemberName = null)
{
    /// <summary>A CPU float32 linear layer of the given sizes (for adapters built outside a model, e.g. in tests or file merges).</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="hasBias">Whether the layer has a bias.</param>
    /// <param name="memberName">For messages.</param>
    /// <returns>The description.</returns>
    public static PeftLayerInfo ForLinear(long inFeatures, long outFeatures, bool hasBias = true, string? memberName = null)
        => new(PeftLayerKind.Linear, inFeatures, outFeatures, hasBias, CPU, ScalarType.Float32, memberName);

    /// <summary>" on member 'x'" or "".</summary>
    internal string Where => AdapterNameRules.Describe(MemberName);
}
