using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// P-tuning (<see cref="PTuningAttribute"/>) in Hugging Face PEFT's format: <c>peft_type</c> "P_TUNING", one tensor
/// <c>prompt_embeddings</c> <c>[num_virtual_tokens, token_dim]</c> holding the prompt encoder's output (PEFT's
/// <c>get_prompt_embedding_to_save</c>; the encoder is not saved), config fields of <c>PromptEncoderConfig</c>: the
/// prompt-learning ones (<c>num_virtual_tokens</c>, <c>token_dim</c>, <c>num_transformer_submodules</c>,
/// <c>num_attention_heads</c>, <c>num_layers</c>) and <c>encoder_reparameterization_type</c>, <c>encoder_hidden_size</c>,
/// <c>encoder_num_layers</c>, <c>encoder_dropout</c>. A file loads as PEFT loads it: into an adapter in inference mode, whose
/// frozen table is the saved prompt and which runs no encoder.
/// </summary>
public sealed class PTuningMethod : PromptLearningMethod
{
    /// <summary>The registered instance.</summary>
    public static PTuningMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { PromptTuningAdapter.PromptEmbeddingsName };

    private PTuningMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "PTuning";

    /// <inheritdoc />
    public override string PeftType => "P_TUNING";

    /// <inheritdoc />
    public override Type AttributeType => typeof(PTuningAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(PTuningOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>Reads PromptEncoderConfig's fields into inference-mode options (the file holds the encoded prompt, not the
    /// encoder). The encoder's settings are checked as PEFT would build it (MLP or LSTM, positive sizes, dropout in [0, 1)), though
    /// the loaded prompt does not depend on them.</summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">Unused: a prompt has one setting.</param>
    /// <returns>The options.</returns>
    /// <exception cref="AdapterFormatException">A field is missing, of the wrong type or out of range, naming the field.</exception>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int tokens = ReadVirtualTokens(config);
        var type = config.GetString("encoder_reparameterization_type") switch
        {
            null or "MLP" => PromptEncoderType.MLP,
            "LSTM" => PromptEncoderType.LSTM,
            _ => throw new AdapterFormatException($"{config.Source}: \"encoder_reparameterization_type\" must be \"MLP\" or \"LSTM\", found {config.Raw["encoder_reparameterization_type"]!.ToJsonString()}."),
        };
        int hidden = config.Raw["encoder_hidden_size"] is null ? 0 : config.GetInt("encoder_hidden_size", 0);
        if (hidden <= 0 && config.Raw["encoder_hidden_size"] is not null)
            throw new AdapterFormatException($"{config.Source}: \"encoder_hidden_size\" must be a positive integer (or null for token_dim), found {hidden}.");
        int layers = config.GetInt("encoder_num_layers", PTuningOptions.DefaultEncoderNumLayers);
        if (layers <= 0)
            throw new AdapterFormatException($"{config.Source}: \"encoder_num_layers\" must be a positive integer, found {layers}.");
        double dropout = config.GetDouble("encoder_dropout", 0);
        if (!(dropout >= 0 && dropout < 1))
            throw new AdapterFormatException($"{config.Source}: \"encoder_dropout\" must be a number in [0, 1), found {dropout}.");
        return new PTuningOptions(tokens, hidden, type, layers, dropout, InferenceMode: true);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        var adapter = WritePromptFields<PTuningAdapter>(writer, a => a.Options.VirtualTokens);
        var options = adapter.Options;
        writer.Fields["encoder_reparameterization_type"] = options.EncoderType.ToString();
        writer.Fields["encoder_hidden_size"] = options.HiddenSize(adapter.OutFeatures);
        writer.Fields["encoder_num_layers"] = options.EncoderNumLayers;
        writer.Fields["encoder_dropout"] = options.EncoderDropout;
    }

    /// <inheritdoc />
    protected override string AdapterDescription => "P-tuning";

    /// <inheritdoc />
    /// <remarks>The prompt a file gives depends only on its table: only the number of virtual tokens must agree.</remarks>
    protected override int VirtualTokensOf(PeftAdapterOptions options) => ((PTuningOptions)options).VirtualTokens;

    /// <inheritdoc />
    /// <remarks>PEFT's file holds the encoder's output, <c>[num_virtual_tokens, embedding size]</c>, not the encoder.</remarks>
    protected override IEnumerable<(string Name, long[] Shape)> ExpectedShapes(PeftAdapterOptions options, long embeddingDim) =>
        [(PromptTuningAdapter.PromptEmbeddingsName, [VirtualTokensOf(options), embeddingDim])];
}
