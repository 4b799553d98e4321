using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// DePT (<see cref="DePTAttribute"/>) in the format of the DePT authors' PEFT fork (ZhengxiangShi/DePT); upstream Hugging
/// Face PEFT has no DePT. <c>peft_type</c> "PROMPT_TUNING_LORA"; tensors <c>prompt_embeddings</c> <c>[V, dim]</c>,
/// <c>prompt_encoder.lora_embedding_A</c> <c>[max_length, r]</c>, <c>prompt_encoder.lora_embedding_B</c> <c>[r, dim]</c>;
/// config fields of the fork's <c>PromptTuningLoRAConfig</c>: the prompt-learning ones (<c>num_virtual_tokens</c>,
/// <c>token_dim</c>, <c>num_transformer_submodules</c>, <c>num_attention_heads</c>, <c>num_layers</c>,
/// <c>prompt_tuning_init</c>, <c>prompt_tuning_init_text</c>, <c>tokenizer_name_or_path</c>) and <c>r</c>,
/// <c>lora_alpha</c>, <c>bias</c>, <c>init_lora_weights</c>, <c>hidden_size</c>, <c>max_length</c>,
/// <c>save_lora_embeddings</c>, <c>load_lora_embeddings</c>, <c>load_lora_embedding_B</c>.
/// </summary>
public sealed class DePTMethod : PromptLearningMethod
{
    /// <summary>The registered instance.</summary>
    public static DePTMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames =
    {
        PromptTuningAdapter.PromptEmbeddingsName, DePTAdapter.FilePrefix + DePTAdapter.AName, DePTAdapter.FilePrefix + DePTAdapter.BName,
    };

    private DePTMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "DePT";

    /// <inheritdoc />
    public override string PeftType => "PROMPT_TUNING_LORA";

    /// <inheritdoc />
    public override Type AttributeType => typeof(DePTAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(DePTOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <summary>Reads the fork's fields. Files that leave the table out (<c>save_lora_embeddings</c>,
    /// <c>load_lora_embeddings</c> or <c>load_lora_embedding_B</c> false) are refused: they would not compute what was
    /// trained.</summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">Unused: a prompt has one setting.</param>
    /// <returns>The options.</returns>
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int tokens = ReadVirtualTokens(config);
        int maxLength = config.GetInt("max_length", 256);
        if (maxLength <= 0 || maxLength > PromptTuningOptions.MaxVirtualTokens)
            throw new AdapterFormatException($"{config.Source}: \"max_length\" must be an integer in [1, {PromptTuningOptions.MaxVirtualTokens}], found {maxLength}.");
        int rank = config.GetInt("r", 8);
        if (rank <= 0)
            throw new AdapterFormatException($"{config.Source}: \"r\" must be a positive integer, found {rank} (r 0 would be prompt tuning: use a PROMPT_TUNING file).");
        double alpha = config.GetDouble("lora_alpha", 8);
        if (!double.IsFinite(alpha) || alpha <= 0)
            throw new AdapterFormatException($"{config.Source}: \"lora_alpha\" must be a finite number > 0, found {alpha}.");
        foreach (var flag in new[] { "save_lora_embeddings", "load_lora_embeddings", "load_lora_embedding_B" })
        {
            if (!config.GetBool(flag, true))
                throw config.Unsupported(flag, "only true is (without the saved table the adapter would not compute what was trained).");
        }

        return new DePTOptions(tokens, maxLength, rank, alpha, config.GetString("prompt_tuning_init_text"));
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        var adapter = WritePromptFields<DePTAdapter>(writer, a => a.Options.VirtualTokens);
        var options = adapter.Options;
        string? initText = options.InitText;
        bool text = initText is not null && writer.TokenizerNameOrPath is not null;
        writer.Fields["prompt_tuning_init"] = text ? "TEXT" : "RANDOM";
        writer.Fields["prompt_tuning_init_text"] = initText;
        writer.Fields["tokenizer_name_or_path"] = text ? writer.TokenizerNameOrPath : null;
        writer.Fields["r"] = options.Rank;
        writer.Fields["lora_alpha"] = options.Alpha;
        writer.Fields["bias"] = "none";
        writer.Fields["init_lora_weights"] = true;
        writer.Fields["hidden_size"] = adapter.OutFeatures;
        writer.Fields["max_length"] = options.MaxLength;
        writer.Fields["save_lora_embeddings"] = true;
        writer.Fields["load_lora_embeddings"] = true;
        writer.Fields["load_lora_embedding_B"] = true;
    }

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
    {
        foreach (var mismatch in base.SettingMismatches(path, fromFile, inModel)) yield return mismatch;
        var file = (DePTOptions)fromFile;
        if (inModel is not DePTOptions model) yield break;
        if (model.MaxLength != file.MaxLength) yield return $"{path}: max_length is {file.MaxLength} in the config, {model.MaxLength} in the model";
        if (model.Rank != file.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
        if (model.Alpha != file.Alpha) yield return $"{path}: lora_alpha is {file.Alpha} in the config, {model.Alpha} in the model (the table's scale alpha / sqrt(r) would differ)";
    }

    /// <inheritdoc />
    protected override string AdapterDescription => "DePT";

    /// <inheritdoc />
    protected override int VirtualTokensOf(PeftAdapterOptions options) => ((DePTOptions)options).VirtualTokens;

    /// <inheritdoc />
    /// <remarks>The prompt <c>[V, dim]</c>, the table's <c>A [max_length, r]</c> and <c>B [r, dim]</c>.</remarks>
    protected override IEnumerable<(string Name, long[] Shape)> ExpectedShapes(PeftAdapterOptions options, long embeddingDim)
    {
        var dept = (DePTOptions)options;
        return
        [
            (s_tensorNames[0], [dept.VirtualTokens, embeddingDim]),
            (s_tensorNames[1], [dept.MaxLength, dept.Rank]),
            (s_tensorNames[2], [dept.Rank, embeddingDim]),
        ];
    }
}
