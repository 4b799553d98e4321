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
public sealed class PTuningMethod : PeftMethod
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
    public override PeftLayerKind LayerKinds => PeftLayerKind.Embedding;

    /// <inheritdoc />
    public override Type AttributeType => typeof(PTuningAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(PTuningOptions);

    /// <inheritdoc />
    public override bool IsPromptLearning => true;

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
        int tokens = config.GetInt("num_virtual_tokens", 0);
        if (tokens <= 0 || tokens > PromptTuningOptions.MaxVirtualTokens)
            throw new AdapterFormatException($"{config.Source}: \"num_virtual_tokens\" must be an integer in [1, {PromptTuningOptions.MaxVirtualTokens}], found {config.Raw["num_virtual_tokens"]?.ToJsonString() ?? "nothing"}.");
        if (config.GetInt("num_transformer_submodules", 1) != 1)
            throw config.Unsupported("num_transformer_submodules", "only 1 is (encoder-decoder models prepend a prompt to each stack).");
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
        ArgumentNullException.ThrowIfNull(writer);
        if (writer.Layers.Count > 1)
        {
            throw new PeftConfigurationException(
                $"Adapter '{writer.AdapterName}' is P-tuning on {writer.Layers.Count} embeddings ({string.Join(", ", writer.Layers.Select(l => l.Path))}); PEFT's format holds one prompt per adapter.",
                writer.Layers[1].Path, writer.AdapterName);
        }

        var adapter = (PTuningAdapter)writer.Layers[0].Adapter;
        var options = adapter.Options;
        writer.Fields["num_virtual_tokens"] = options.VirtualTokens;
        writer.Fields["token_dim"] = adapter.OutFeatures;
        writer.Fields["num_transformer_submodules"] = 1;
        writer.Fields["num_attention_heads"] = null;
        writer.Fields["num_layers"] = null;
        writer.Fields["encoder_reparameterization_type"] = options.EncoderType.ToString();
        writer.Fields["encoder_hidden_size"] = options.HiddenSize(adapter.OutFeatures);
        writer.Fields["encoder_num_layers"] = options.EncoderNumLayers;
        writer.Fields["encoder_dropout"] = options.EncoderDropout;
    }

    /// <summary>The prompt a file gives depends only on its table: the number of virtual tokens must agree (the table's shape
    /// is checked with the tensors).</summary>
    /// <param name="path">The module path, for messages.</param>
    /// <param name="fromFile">The file's options.</param>
    /// <param name="inModel">The model adapter's options.</param>
    /// <returns>The mismatches.</returns>
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        var file = (PTuningOptions)fromFile;
        if (inModel is PTuningOptions model && model.VirtualTokens != file.VirtualTokens)
        {
            yield return $"{path}: num_virtual_tokens is {file.VirtualTokens} in the config, {model.VirtualTokens} in the model";
        }
    }

    /// <summary>Creates the inference-mode adapter on the model's input embedding, as prompt tuning's load does, after checking
    /// the file's <c>prompt_embeddings</c> is <c>[num_virtual_tokens, embedding size]</c>.</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter to create.</param>
    /// <param name="config">The config.</param>
    /// <param name="fileShapes">The weights file's tensor shapes.</param>
    public override void CreateFromConfig(nn.Module model, string adapterName, AdapterConfig config, IReadOnlyDictionary<string, long[]> fileShapes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(fileShapes);
        var options = (PTuningOptions)ReadOptions(config, null);
        PromptTuningMethod.CreateOnInputEmbedding(model, adapterName, config, options,
            dim => new[] { (PromptTuningAdapter.PromptEmbeddingsName, new long[] { options.VirtualTokens, dim }) }, fileShapes);
    }
}
