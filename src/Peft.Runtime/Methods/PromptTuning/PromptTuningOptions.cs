namespace Peft;

/// <summary>Options of a prompt-tuning adapter (PEFT's <c>PromptTuningConfig</c>).</summary>
/// <param name="VirtualTokens">The number of virtual tokens V (positive). PEFT's <c>num_virtual_tokens</c>.</param>
/// <param name="InitText">A text whose token embeddings initialise the prompt (PEFT's <c>prompt_tuning_init="TEXT"</c>,
/// applied by <see cref="PeftModel.InitializePromptsFromText"/>); null for PEFT's RANDOM initialisation (standard normal).</param>
public sealed record PromptTuningOptions(int VirtualTokens = 20, string? InitText = null) : PeftAdapterOptions
{
    /// <summary>The largest number of virtual tokens accepted (a prompt longer than any model's context is a damaged
    /// configuration, and would allocate before anything else could check it).</summary>
    public const int MaxVirtualTokens = 1 << 16;

    /// <inheritdoc />
    public override PeftMethod Method => PromptTuningMethod.Instance;

    /// <summary>Checks the options.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        if (VirtualTokens <= 0 || VirtualTokens > MaxVirtualTokens)
        {
            throw new PeftConfigurationException(
                $"Prompt-tuning adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}: the number of virtual tokens must be in [1, {MaxVirtualTokens}], got {VirtualTokens}.",
                memberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new PromptTuningAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override bool SameUpdate(PeftAdapterOptions other) => other is PromptTuningOptions o && o.VirtualTokens == VirtualTokens;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("num_virtual_tokens", VirtualTokens);
        yield return ("prompt_tuning_init_text", InitText);
    }
}
