namespace Peft;

/// <summary>Options of a DePT adapter (the DePT fork's <c>PromptTuningLoRAConfig</c>).</summary>
/// <param name="VirtualTokens">The number of prompt tokens V, in [1, 65536] (<c>num_virtual_tokens</c>).</param>
/// <param name="MaxLength">The input length S the table covers, in [1, 65536] (<c>max_length</c>).</param>
/// <param name="Rank">The table's rank r, positive (<c>r</c>).</param>
/// <param name="Alpha">The scale numerator, positive: the table is <c>(alpha / sqrt(r)) · A B</c> (<c>lora_alpha</c>).</param>
/// <param name="InitText">A text whose token embeddings initialise the prompt (<c>prompt_tuning_init="TEXT"</c>, applied by
/// <see cref="PeftModel.InitializePromptsFromText"/>); null for a standard normal prompt (RANDOM).</param>
public sealed record DePTOptions(int VirtualTokens = 20, int MaxLength = 256, int Rank = 8, double Alpha = 8.0, string? InitText = null) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => DePTMethod.Instance;

    /// <summary>The table's scale, <c>alpha / sqrt(r)</c> (as the DePT code computes it, not LoRA's alpha / r).</summary>
    public double Scaling => Alpha / Math.Sqrt(Rank);

    /// <summary>Checks the options.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        string where = $"DePT adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (VirtualTokens <= 0 || VirtualTokens > PromptTuningOptions.MaxVirtualTokens)
            throw new PeftConfigurationException($"{where}: VirtualTokens must be in [1, {PromptTuningOptions.MaxVirtualTokens}], got {VirtualTokens}.", memberName, adapterName);
        if (MaxLength <= 0 || MaxLength > PromptTuningOptions.MaxVirtualTokens)
            throw new PeftConfigurationException($"{where}: MaxLength (the input length every batch is padded or truncated to) must be in [1, {PromptTuningOptions.MaxVirtualTokens}], got {MaxLength}.", memberName, adapterName);
        if (Rank <= 0)
            throw new PeftConfigurationException($"{where}: Rank must be positive, got {Rank}.", memberName, adapterName);
        if (!double.IsFinite(Alpha) || Alpha <= 0)
            throw new PeftConfigurationException($"{where}: Alpha must be a finite number > 0, got {Alpha}.", memberName, adapterName);
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new DePTAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override bool SameUpdate(PeftAdapterOptions other)
        => other is DePTOptions o && o.VirtualTokens == VirtualTokens && o.MaxLength == MaxLength && o.Rank == Rank && o.Alpha == Alpha;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("num_virtual_tokens", VirtualTokens);
        yield return ("max_length", MaxLength);
        yield return ("r", Rank);
        yield return ("lora_alpha", Alpha);
        yield return ("prompt_tuning_init_text", InitText);
    }
}
