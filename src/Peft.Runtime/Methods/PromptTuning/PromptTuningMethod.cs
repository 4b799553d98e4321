using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Prompt tuning (<see cref="PromptTuneAttribute"/>) in Hugging Face PEFT's prompt-learning format: <c>peft_type</c>
/// "PROMPT_TUNING", one tensor <c>prompt_embeddings</c> <c>[num_virtual_tokens, token_dim]</c>, config fields
/// <c>num_virtual_tokens</c>, <c>token_dim</c>, <c>num_transformer_submodules</c>, <c>prompt_tuning_init</c>,
/// <c>prompt_tuning_init_text</c>, <c>tokenizer_name_or_path</c>.
/// </summary>
public sealed class PromptTuningMethod : PromptLearningMethod
{
    /// <summary>The registered instance.</summary>
    public static PromptTuningMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { PromptTuningAdapter.PromptEmbeddingsName };

    private PromptTuningMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "PromptTune";

    /// <inheritdoc />
    public override string PeftType => "PROMPT_TUNING";

    /// <inheritdoc />
    public override Type AttributeType => typeof(PromptTuneAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(PromptTuningOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new PromptTuningOptions(ReadVirtualTokens(config), config.GetString("prompt_tuning_init_text"));
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer)
    {
        var adapter = WritePromptFields<PromptTuningAdapter>(writer, a => a.VirtualTokens);
        string? initText = adapter.Options.InitText;
        bool text = initText is not null && writer.TokenizerNameOrPath is not null;
        writer.Fields["prompt_tuning_init"] = text ? "TEXT" : "RANDOM";
        writer.Fields["prompt_tuning_init_text"] = initText;
        writer.Fields["tokenizer_name_or_path"] = text ? writer.TokenizerNameOrPath : null;
        writer.Fields["tokenizer_kwargs"] = null;
    }

    /// <inheritdoc />
    protected override string AdapterDescription => "a prompt";

    /// <inheritdoc />
    protected override int VirtualTokensOf(PeftAdapterOptions options) => ((PromptTuningOptions)options).VirtualTokens;

    /// <inheritdoc />
    protected override IEnumerable<(string Name, long[] Shape)> ExpectedShapes(PeftAdapterOptions options, long embeddingDim) =>
        [(PromptTuningAdapter.PromptEmbeddingsName, [VirtualTokensOf(options), embeddingDim])];
}
