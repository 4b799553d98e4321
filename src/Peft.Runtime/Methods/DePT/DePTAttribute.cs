namespace Peft;

/// <summary>
/// DePT, decomposed prompt tuning (Shi and Lipani, 2024): a short learned prompt prepended to the input embeddings plus a
/// low-rank table added to them position by position, <c>E' = E(ids) + (alpha / sqrt(r)) · A B</c> with <c>A</c>
/// <c>[maxLength, r]</c> and <c>B</c> <c>[r, dim]</c>. Put it on the field or property of type
/// <c>Module&lt;Tensor, Tensor&gt;</c> that holds the model's <c>TorchSharp.Modules.Embedding</c>.
/// </summary>
/// <remarks>
/// Every input must hold exactly <c>maxLength</c> tokens (pad or truncate, as the DePT code does with
/// <c>padding="max_length"</c>); the layer refuses any other length. As with <see cref="PromptTuneAttribute"/>, the output is
/// <c>[batch, V + maxLength, dim]</c>: extend masks with <see cref="PeftModel.ExtendAttentionMask"/> and drop the first V
/// outputs with <see cref="PeftModel.StripVirtualTokens"/>. Train the table with its own learning rate through
/// <c>TrainingOptions.ParameterLearningRate</c> (<see cref="PeftModel.DePTLearningRates"/>).
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class DePTAttribute : Attribute
{
    /// <summary>Declares a DePT adapter.</summary>
    /// <param name="virtualTokens">The number of prompt tokens V (positive; the DePT fork's <c>num_virtual_tokens</c>).</param>
    /// <param name="maxLength">The input length S the table covers (positive; <c>max_length</c>, 256 by default).</param>
    /// <param name="rank">The table's rank r (positive; <c>r</c>, 8 by default).</param>
    /// <param name="alpha">The scale numerator: the table is scaled by alpha / sqrt(r) (positive; <c>lora_alpha</c>, 8 by default).</param>
    public DePTAttribute(int virtualTokens = 20, int maxLength = 256, int rank = 8, double alpha = 8.0)
    {
        VirtualTokens = virtualTokens;
        MaxLength = maxLength;
        Rank = rank;
        Alpha = alpha;
    }

    /// <summary>The number of prompt tokens.</summary>
    public int VirtualTokens { get; }

    /// <summary>The input length the table covers.</summary>
    public int MaxLength { get; }

    /// <summary>The table's rank.</summary>
    public int Rank { get; }

    /// <summary>The scale numerator.</summary>
    public double Alpha { get; }

    /// <summary>A text whose token embeddings initialise the prompt (<c>prompt_tuning_init="TEXT"</c>); applied by
    /// <see cref="PeftModel.InitializePromptsFromText"/>. When null the prompt starts standard normal.</summary>
    public string? InitText { get; set; }

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
