namespace Peft;

/// <summary>Options of a P-tuning adapter (PEFT's <c>PromptEncoderConfig</c>).</summary>
/// <param name="VirtualTokens">The number of virtual tokens V, in [1, 65536] (<c>num_virtual_tokens</c>).</param>
/// <param name="EncoderHiddenSize">The encoder's hidden size h (<c>encoder_hidden_size</c>); 0 takes the embedding size, as PEFT
/// does when the field is unset.</param>
/// <param name="EncoderType">MLP or LSTM (<c>encoder_reparameterization_type</c>).</param>
/// <param name="EncoderNumLayers">The LSTM's layers (<c>encoder_num_layers</c>); the MLP has PEFT's fixed three linear layers
/// and accepts only the default 2.</param>
/// <param name="EncoderDropout">The dropout between LSTM layers while training, in [0, 1) (<c>encoder_dropout</c>); the MLP has
/// none and accepts only 0.</param>
/// <param name="InferenceMode">PEFT's <c>inference_mode</c>: the adapter holds the encoded prompt itself as a frozen table
/// <c>[V, dim]</c> and no encoder. This is what a PEFT file loads into (it holds the encoder's output only, and PEFT refuses
/// to make a loaded prompt-learning adapter trainable).</param>
public sealed record PTuningOptions(
    int VirtualTokens = 20,
    int EncoderHiddenSize = 0,
    PromptEncoderType EncoderType = PromptEncoderType.MLP,
    int EncoderNumLayers = 2,
    double EncoderDropout = 0.0,
    bool InferenceMode = false) : PeftAdapterOptions
{
    /// <summary>PEFT's default <c>encoder_num_layers</c>, the only value the MLP accepts.</summary>
    public const int DefaultEncoderNumLayers = 2;

    /// <inheritdoc />
    public override PeftMethod Method => PTuningMethod.Instance;

    /// <summary>The encoder's hidden size for an embedding of size <paramref name="embeddingDim"/>.</summary>
    /// <param name="embeddingDim">The embedding size d.</param>
    /// <returns><see cref="EncoderHiddenSize"/>, or d when it is 0.</returns>
    public long HiddenSize(long embeddingDim) => EncoderHiddenSize > 0 ? EncoderHiddenSize : embeddingDim;

    /// <summary>Checks the options.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range, or set where the encoder ignores it.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        string where = $"P-tuning adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (VirtualTokens <= 0 || VirtualTokens > PromptTuningOptions.MaxVirtualTokens)
            throw new PeftConfigurationException($"{where}: VirtualTokens must be in [1, {PromptTuningOptions.MaxVirtualTokens}], got {VirtualTokens}.", memberName, adapterName);
        if (EncoderHiddenSize < 0)
            throw new PeftConfigurationException($"{where}: EncoderHiddenSize must be positive, or 0 for the embedding size, got {EncoderHiddenSize}.", memberName, adapterName);
        if (!Enum.IsDefined(EncoderType))
            throw new PeftConfigurationException($"{where}: EncoderType {(int)EncoderType} is neither MLP nor LSTM.", memberName, adapterName);
        if (EncoderNumLayers <= 0)
            throw new PeftConfigurationException($"{where}: EncoderNumLayers must be positive, got {EncoderNumLayers}.", memberName, adapterName);
        if (!(EncoderDropout >= 0 && EncoderDropout < 1))
            throw new PeftConfigurationException($"{where}: EncoderDropout must be in [0, 1), got {EncoderDropout}.", memberName, adapterName);
        if (EncoderType == PromptEncoderType.MLP && !InferenceMode && (EncoderNumLayers != DefaultEncoderNumLayers || EncoderDropout != 0))
        {
            throw new PeftConfigurationException(
                $"{where}: the MLP encoder has PEFT's fixed three linear layers and no dropout, but EncoderNumLayers is {EncoderNumLayers} and EncoderDropout {EncoderDropout}; " +
                "remove them, or use EncoderType = PromptEncoderType.LSTM.", memberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new PTuningAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override bool SameUpdate(PeftAdapterOptions other) => Equals(other);

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("num_virtual_tokens", VirtualTokens);
        yield return ("encoder_reparameterization_type", EncoderType.ToString());
        yield return ("encoder_hidden_size", EncoderHiddenSize > 0 ? EncoderHiddenSize : null);
        yield return ("encoder_num_layers", EncoderNumLayers);
        yield return ("encoder_dropout", EncoderDropout);
        yield return ("inference_mode", InferenceMode);
    }
}
