namespace Peft;

/// <summary>
/// The adaption prompt (LLaMA-Adapter's zero-init attention; PEFT's <c>AdaptionPromptConfig</c>, peft_type
/// <c>ADAPTION_PROMPT</c>): in each of the top <see cref="AdapterLayers"/> blocks of a transformer stack, the attention attends
/// to <see cref="AdapterLen"/> learned tokens of its own through a separate softmax, gated by a learned scalar that starts at
/// zero, so the model is its base at init.
/// </summary>
/// <param name="AdapterLen">Adapter tokens per attention (<c>adapter_len</c>): the prompt is <c>[1, adapter_len, hidden]</c>.</param>
/// <param name="AdapterLayers">How many blocks from the top get a prompt (<c>adapter_layers</c>): 1 to the stack's depth.</param>
public sealed record AdaptionPromptConfig(int AdapterLen, int AdapterLayers)
{
    /// <summary>PEFT's <c>peft_type</c>.</summary>
    public const string PeftType = "ADAPTION_PROMPT";

    /// <summary>The largest <see cref="AdapterLen"/> accepted (a guard against a misread file, far above the paper's 10).</summary>
    public const int MaxAdapterLen = 4096;

    /// <summary>Checks the fields that need no model.</summary>
    /// <exception cref="PeftConfigurationException">A field is out of range (the message names it and the fix).</exception>
    public void Validate()
    {
        if (AdapterLen < 1 || AdapterLen > MaxAdapterLen)
        {
            throw new PeftConfigurationException(
                $"AdaptionPromptConfig.AdapterLen (adapter_len) is {AdapterLen}; it must be 1 to {MaxAdapterLen} adapter tokens (LLaMA-Adapter uses 10).",
                nameof(AdapterLen), null);
        }

        if (AdapterLayers < 1)
        {
            throw new PeftConfigurationException(
                $"AdaptionPromptConfig.AdapterLayers (adapter_layers) is {AdapterLayers}; it must be at least 1 (the number of top blocks that get a prompt).",
                nameof(AdapterLayers), null);
        }
    }

    /// <summary>Checks <see cref="AdapterLayers"/> against a stack of <paramref name="blocks"/> blocks.</summary>
    /// <param name="blocks">The stack's depth.</param>
    /// <exception cref="PeftConfigurationException">More layers than the stack has.</exception>
    public void ValidateFor(int blocks)
    {
        Validate();
        if (AdapterLayers > blocks)
        {
            throw new PeftConfigurationException(
                $"AdaptionPromptConfig.AdapterLayers (adapter_layers) is {AdapterLayers}, but the model's stack has {blocks} block(s); use 1 to {blocks}.",
                nameof(AdapterLayers), null);
        }
    }

    /// <summary>The settings as <c>peft inspect</c> shows them.</summary>
    /// <returns>(name, value) pairs with PEFT's field names.</returns>
    public IReadOnlyList<(string Name, int Value)> Describe() => [("adapter_len", AdapterLen), ("adapter_layers", AdapterLayers)];
}
