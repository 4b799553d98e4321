using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Models;

/// <summary>The weight of an input-embedding member, wrapped by configuration targeting or not (tied output heads read it).</summary>
internal static class EmbeddingWeight
{
    /// <summary>The <c>weight</c> [vocabulary, dim] of an <see cref="Embedding"/> or <see cref="AdaptedEmbedding"/>.</summary>
    /// <param name="module">The member's module.</param>
    /// <param name="memberName">For the message.</param>
    public static Parameter Of(nn.Module<Tensor, Tensor> module, string memberName) => module switch
    {
        AdaptedEmbedding adapted => adapted.Weight,
        Embedding embedding => embedding.weight!,
        _ => throw new InvalidOperationException($"Member '{memberName}' holds a {module.GetType().Name}, not an embedding."),
    };
}
