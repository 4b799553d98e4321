namespace Peft.Models.Llama;

/// <summary>
/// How <see cref="LlamaForCausalLM.Generate"/> picks each next token. Greedy takes the most likely token; otherwise
/// the logits are divided by <see cref="Temperature"/>, filtered by <see cref="TopK"/> then <see cref="TopP"/>
/// (transformers' order and rules), and a token is drawn with a generator seeded from <see cref="Seed"/>.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Take the argmax at every step (the default, like transformers' <c>do_sample=False</c>).</summary>
    public bool Greedy { get; init; } = true;

    /// <summary>Divides the logits before sampling (must be positive; 1 leaves them unchanged).</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Keep only the <c>k</c> most likely tokens; 0 keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability reaches this mass (nucleus); 1 keeps all.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Seed of the sampling generator; the same seed, model and prompt give the same tokens.</summary>
    public ulong Seed { get; init; }

    /// <summary>Stop once every sequence has produced this token, or never when null.</summary>
    public long? EosTokenId { get; init; }
}
