namespace Peft;

/// <summary>
/// P-tuning (Liu et al., "GPT Understands, Too"): virtual-token embeddings produced by a trained prompt encoder,
/// <c>prompt = encoder(embedding(arange(V)))</c>, prepended to the output of an input embedding layer as prompt tuning's are.
/// Put it on the field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds the model's
/// <c>TorchSharp.Modules.Embedding</c>.
/// </summary>
/// <remarks>
/// The encoder is PEFT's <c>PromptEncoder</c>: MLP <c>Linear(d, h)–ReLU–Linear(h, h)–ReLU–Linear(h, d)</c>, or a bidirectional
/// LSTM of <see cref="EncoderNumLayers"/> layers followed by <c>Linear(2h, 2h)–ReLU–Linear(2h, d)</c>. As with
/// <see cref="PromptTuneAttribute"/>, the layer maps token ids <c>[batch, T]</c> to <c>[batch, V + T, dim]</c>: extend masks
/// with <see cref="PeftModel.ExtendAttentionMask"/> and drop the first V outputs with <see cref="PeftModel.StripVirtualTokens"/>.
/// PEFT's file holds only the encoder's output (<c>prompt_embeddings</c>); the encoder's weights survive training in a trainer
/// checkpoint.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class PTuningAttribute : Attribute
{
    /// <summary>Declares a P-tuning adapter.</summary>
    /// <param name="virtualTokens">The number of virtual tokens V (positive; PEFT's <c>num_virtual_tokens</c>).</param>
    /// <param name="encoderHiddenSize">The encoder's hidden size h (PEFT's <c>encoder_hidden_size</c>); 0, the default, takes
    /// the embedding size, as PEFT does when it is unset.</param>
    public PTuningAttribute(int virtualTokens = 20, int encoderHiddenSize = 0)
    {
        VirtualTokens = virtualTokens;
        EncoderHiddenSize = encoderHiddenSize;
    }

    /// <summary>The number of virtual tokens.</summary>
    public int VirtualTokens { get; }

    /// <summary>The encoder's hidden size (0: the embedding size).</summary>
    public int EncoderHiddenSize { get; }

    /// <summary>The encoder (PEFT's <c>encoder_reparameterization_type</c>): MLP (the default) or LSTM.</summary>
    public PromptEncoderType EncoderType { get; set; } = PromptEncoderType.MLP;

    /// <summary>The LSTM's number of layers (PEFT's <c>encoder_num_layers</c>, 2). The MLP always has PEFT's fixed three linear
    /// layers, so any other value with the MLP is an error (PEFT ignores it with a warning).</summary>
    public int EncoderNumLayers { get; set; } = 2;

    /// <summary>The dropout between the LSTM's layers while training (PEFT's <c>encoder_dropout</c>, 0); PEFT's MLP has no
    /// dropout, so any other value with the MLP is an error.</summary>
    public double EncoderDropout { get; set; }

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}

/// <summary>P-tuning's prompt encoder (PEFT's <c>PromptEncoderReparameterizationType</c>).</summary>
public enum PromptEncoderType
{
    /// <summary><c>Linear(d, h)–ReLU–Linear(h, h)–ReLU–Linear(h, d)</c> (PEFT's default, "MLP").</summary>
    MLP = 0,

    /// <summary>A bidirectional LSTM (<c>EncoderNumLayers</c> layers, hidden size h) and <c>Linear(2h, 2h)–ReLU–Linear(2h, d)</c> ("LSTM").</summary>
    LSTM = 1,
}
