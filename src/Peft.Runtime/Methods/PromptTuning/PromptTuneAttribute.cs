namespace Peft;

/// <summary>
/// Prompt tuning (Lester et al., 2021): learned virtual-token embeddings prepended to the output of an input
/// embedding layer. Put it on the field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds the model's
/// <c>TorchSharp.Modules.Embedding</c>.
/// </summary>
/// <remarks>
/// With the adapter active, the layer maps token ids <c>[batch, T]</c> to embeddings <c>[batch, V + T, dim]</c>;
/// extend attention masks with <see cref="PeftModel.ExtendAttentionMask"/> and drop the first V outputs with
/// <see cref="PeftModel.StripVirtualTokens"/>. The model's forward must take the sequence length from the
/// embedding output, not from the token ids.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class PromptTuneAttribute : Attribute
{
    /// <summary>Declares a prompt-tuning adapter.</summary>
    /// <param name="virtualTokens">The number of virtual tokens V (positive).</param>
    public PromptTuneAttribute(int virtualTokens = 20)
    {
        VirtualTokens = virtualTokens;
    }

    /// <summary>The number of virtual tokens.</summary>
    public int VirtualTokens { get; }

    /// <summary>
    /// A text whose token embeddings initialise the prompt (PEFT's <c>prompt_tuning_init="TEXT"</c>); applied by
    /// <see cref="PeftModel.InitializePromptsFromText"/>. When null the prompt starts random (standard normal, as PEFT's RANDOM init).
    /// </summary>
    public string? InitText { get; set; }

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
