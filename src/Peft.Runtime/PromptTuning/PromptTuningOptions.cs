namespace Peft;

/// <summary>Options of a prompt-tuning adapter (PEFT's <c>PromptTuningConfig</c>).</summary>
/// <param name="VirtualTokens">The number of virtual tokens V (positive). PEFT's <c>num_virtual_tokens</c>.</param>
/// <param name="InitText">A text whose token embeddings initialise the prompt (PEFT's <c>prompt_tuning_init="TEXT"</c>,
/// applied by <see cref="PeftModel.InitializePromptsFromText"/>); null for PEFT's RANDOM initialisation (standard normal).</param>
public sealed record PromptTuningOptions(int VirtualTokens = 20, string? InitText = null) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => PeftMethod.PromptTuning;

    /// <summary>Checks the options.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        if (VirtualTokens <= 0)
        {
            throw new PeftConfigurationException(
                $"Prompt-tuning adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}: the number of virtual tokens must be positive, got {VirtualTokens}.",
                memberName, adapterName);
        }
    }
}
