using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>The rows of the methods acting inside attention (<see cref="AttentionInsertions"/>), on <see cref="TinyStack"/>
/// (2 blocks, 2 heads of width 4): prefix tuning (3 positions, direct and through PEFT's MLP of width 16; not the base at
/// init: PEFT's table starts N(0, 1)), the adaption prompt (4 tokens in the top block; the base at init through its zero
/// gate) and the MAM adapter (a prefix through an MLP and scaled parallel adapters under one name, saved as PEFT's prefix
/// file beside the bottleneck file in <c>parallel/</c>).</summary>
public static class AttentionRows
{
    /// <summary>The fields every PREFIX_TUNING file has.</summary>
    public static readonly string[] PrefixConfigKeys =
    {
        "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "num_virtual_tokens", "token_dim",
        "num_transformer_submodules", "num_attention_heads", "num_layers", "encoder_hidden_size", "prefix_projection",
    };

    /// <summary>The fields every ADAPTION_PROMPT file has.</summary>
    public static readonly string[] AdaptionConfigKeys =
    {
        "peft_type", "adapter_len", "adapter_layers", "target_modules", "base_model_name_or_path", "task_type", "revision", "inference_mode",
        "peft_version", "auto_mapping",
    };

    private const string ParallelDirectory = "parallel";

    /// <summary>The rows.</summary>
    public static readonly InsertedConformanceCase[] Cases =
    {
        Prefix("prefix", new PrefixTuningConfig(3), hidden: 8),
        Prefix("prefix-mlp", new PrefixTuningConfig(3, Projection: true, EncoderHiddenSize: 16), hidden: 16),
        new InsertedConformanceCase(
            "adaption-prompt",
            m => m.AddAdaptionPrompt(new AdaptionPromptConfig(4, 1)),
            (m, dir) => m.SaveAdaptionPrompt(dir),
            (m, dir) => m.LoadAdaptionPrompt(dir),
            Peft.Serialization.AdapterFiles.WeightsFileName,
            Peft.Serialization.AdapterFiles.ConfigFileName)
        {
            ExpectedKeys = ["base_model.model.blocks.1.attn.adaption_prompt", "base_model.model.blocks.1.attn.adaption_gate"],
            ConfigKeys = AdaptionConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?>
            {
                ["peft_type"] = "ADAPTION_PROMPT", ["adapter_len"] = 4, ["adapter_layers"] = 1, ["target_modules"] = "attn",
            },
        },
        new InsertedConformanceCase(
            "mam",
            m => m.AddMamAdapter(prefix: new PrefixTuningConfig(3, Projection: true, EncoderHiddenSize: 16), parallel: BottleneckConfig.ScaledParallel()),
            (m, dir) =>
            {
                m.SavePrefixTuning(dir);
                m.SaveBottleneckAdapters(Path.Combine(dir, ParallelDirectory));
            },
            (m, dir) =>
            {
                m.LoadPrefixTuning(dir);
                m.LoadBottleneckAdapters(Path.Combine(dir, ParallelDirectory));
            },
            Peft.Serialization.AdapterFiles.WeightsFileName,
            Peft.Serialization.AdapterFiles.ConfigFileName)
        {
            IdentityAtInit = false,
            // The prefix reloads as PEFT's table; the parallel adapters as themselves.
            SavedTensors = m => TorchSharp.torch.cat(
                m.InsertedAdapters().Select(a => a.Adapter).OfType<BottleneckAdapter>().SelectMany(a => a.parameters()).Select(p => p.flatten())
                    .Prepend(m.PrefixTable().flatten()).ToList(), 0),
            ExpectedKeys = [PrefixTuning.TableName],
            ConfigKeys = PrefixConfigKeys,
            ExpectedConfig = new Dictionary<string, JsonNode?> { ["peft_type"] = "PREFIX_TUNING", ["prefix_projection"] = true, ["encoder_hidden_size"] = 16 },
        },
    };

    private static InsertedConformanceCase Prefix(string name, PrefixTuningConfig config, int hidden) => InsertedConformanceCase.Prefix(name, config) with
    {
        ExpectedKeys = [PrefixTuning.TableName],
        ConfigKeys = PrefixConfigKeys,
        ExpectedConfig = new Dictionary<string, JsonNode?>
        {
            ["peft_type"] = "PREFIX_TUNING", ["num_virtual_tokens"] = 3, ["token_dim"] = TinyStack.Width, ["num_attention_heads"] = TinyStack.Heads,
            ["num_layers"] = 2, ["num_transformer_submodules"] = 1, ["encoder_hidden_size"] = hidden, ["prefix_projection"] = config.Projection,
        },
    };
}
