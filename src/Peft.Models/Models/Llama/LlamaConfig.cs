using Peft.Checkpoints;

namespace Peft.Models.Llama;

/// <summary>
/// The sizes of a LLaMA-style decoder, read from a Hugging Face <c>config.json</c> (Llama, Mistral and Qwen2 use
/// these fields). Defaults follow transformers' <c>LlamaConfig</c> where a field is optional. Qwen2 differs only by
/// biases on q/k/v (<see cref="QkvBias"/>); settings this port does not model (<c>rope_scaling</c>, a sliding window,
/// an activation other than SiLU) are refused rather than ignored.
/// </summary>
public sealed record LlamaConfig
{
    /// <summary><c>vocab_size</c>.</summary>
    public required int VocabSize { get; init; }

    /// <summary><c>hidden_size</c>.</summary>
    public required int HiddenSize { get; init; }

    /// <summary><c>intermediate_size</c> (the SwiGLU width).</summary>
    public required int IntermediateSize { get; init; }

    /// <summary><c>num_hidden_layers</c>.</summary>
    public required int NumHiddenLayers { get; init; }

    /// <summary><c>num_attention_heads</c>.</summary>
    public required int NumAttentionHeads { get; init; }

    /// <summary><c>num_key_value_heads</c>; equal to <see cref="NumAttentionHeads"/> when absent (no grouping).</summary>
    public int? NumKeyValueHeads { get; init; }

    /// <summary><c>head_dim</c>; <see cref="HiddenSize"/> / <see cref="NumAttentionHeads"/> when absent.</summary>
    public int? HeadDimension { get; init; }

    /// <summary><c>rms_norm_eps</c> (default 1e-6).</summary>
    public double RmsNormEps { get; init; } = 1e-6;

    /// <summary><c>rope_theta</c>, the rotary base (default 10000).</summary>
    public double RopeTheta { get; init; } = 10000.0;

    /// <summary><c>max_position_embeddings</c> (default 2048); generation refuses to go past it.</summary>
    public int MaxPositionEmbeddings { get; init; } = 2048;

    /// <summary><c>tie_word_embeddings</c>: the output head reuses the input embedding (no <c>lm_head</c> module).</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Biases on <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>: Qwen2 (always), Llama's <c>attention_bias</c>.</summary>
    public bool QkvBias { get; init; }

    /// <summary>A bias on <c>o_proj</c>: Llama's <c>attention_bias</c> (Qwen2 has none).</summary>
    public bool OutputBias { get; init; }

    /// <summary>Biases on <c>gate_proj</c>, <c>up_proj</c>, <c>down_proj</c>: Llama's <c>mlp_bias</c>.</summary>
    public bool MlpBias { get; init; }

    /// <summary>The key/value head count actually used.</summary>
    public int KeyValueHeads => NumKeyValueHeads ?? NumAttentionHeads;

    /// <summary>The per-head width actually used.</summary>
    public int HeadDim => HeadDimension ?? HiddenSize / NumAttentionHeads;

    /// <summary>Reads a Llama-layout configuration.</summary>
    /// <param name="config">A parsed <c>config.json</c>.</param>
    /// <exception cref="ArgumentException">A required field is missing or the sizes are inconsistent.</exception>
    public static LlamaConfig FromHf(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int Required(int? value, string key) =>
            value ?? throw new ArgumentException($"config.json has no \"{key}\", which a Llama-style model needs.", nameof(config));

        int? headDim = config.Json["head_dim"] is { } node ? node.GetValue<int>() : null;
        bool Flag(string key) => config.Json[key] is { } value && value.GetValue<bool>();
        if (config.Json["rope_scaling"] is { } scaling)
            throw new ArgumentException($"config.json sets \"rope_scaling\": {scaling.ToJsonString()}; scaled rotary embeddings (e.g. Llama 3.1's \"llama3\" type) are not modelled, so the outputs would be wrong.", nameof(config));
        if (Flag("use_sliding_window"))
            throw new ArgumentException("config.json sets \"use_sliding_window\": true; sliding-window attention is not modelled.", nameof(config));
        if (config.Json["hidden_act"] is { } act && act.GetValue<string>() != "silu")
            throw new ArgumentException($"config.json sets \"hidden_act\": \"{act.GetValue<string>()}\"; this Llama-style port computes SwiGLU with SiLU only.", nameof(config));
        bool qwen2 = config.ModelType == "qwen2";
        bool attentionBias = Flag("attention_bias");
        var result = new LlamaConfig
        {
            VocabSize = Required(config.VocabSize, "vocab_size"),
            HiddenSize = Required(config.HiddenSize, "hidden_size"),
            IntermediateSize = Required(config.IntermediateSize, "intermediate_size"),
            NumHiddenLayers = Required(config.NumHiddenLayers, "num_hidden_layers"),
            NumAttentionHeads = Required(config.NumAttentionHeads, "num_attention_heads"),
            NumKeyValueHeads = config.NumKeyValueHeads,
            HeadDimension = headDim,
            RmsNormEps = config.RmsNormEps ?? 1e-6,
            RopeTheta = config.RopeTheta ?? 10000.0,
            MaxPositionEmbeddings = config.MaxPositionEmbeddings ?? 2048,
            // transformers' LlamaConfig defaults tie_word_embeddings to false.
            TieWordEmbeddings = config.TieWordEmbeddings ?? false,
            // Qwen2's attention always has q/k/v biases and no o_proj bias; Llama's attention_bias puts one on all four.
            QkvBias = qwen2 || attentionBias,
            OutputBias = !qwen2 && attentionBias,
            MlpBias = Flag("mlp_bias"),
        };
        result.Validate();
        return result;
    }

    /// <summary>Writes this configuration as a transformers <c>LlamaConfig</c> config.json.</summary>
    public HfConfig ToHf()
    {
        // Biases on q/k/v only are Qwen2's layout; anything else is written as a transformers LlamaConfig.
        bool qwen2 = QkvBias && !OutputBias && !MlpBias;
        var config = new HfConfig
        {
            ModelType = qwen2 ? "qwen2" : "llama",
            VocabSize = VocabSize,
            HiddenSize = HiddenSize,
            IntermediateSize = IntermediateSize,
            NumHiddenLayers = NumHiddenLayers,
            NumAttentionHeads = NumAttentionHeads,
            NumKeyValueHeads = KeyValueHeads,
            RmsNormEps = RmsNormEps,
            RopeTheta = RopeTheta,
            MaxPositionEmbeddings = MaxPositionEmbeddings,
            TieWordEmbeddings = TieWordEmbeddings,
            TorchDType = "float32",
        };
        config.Json["architectures"] = new System.Text.Json.Nodes.JsonArray(qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
        config.Json["hidden_act"] = "silu";
        if (!qwen2)
        {
            config.Json["attention_bias"] = QkvBias;
            config.Json["mlp_bias"] = MlpBias;
        }
        if (!qwen2 && QkvBias != OutputBias)
            throw new InvalidOperationException("A Llama config.json has one attention_bias for q/k/v/o; q/k/v biases without an o_proj bias are Qwen2's layout, which has no mlp bias.");
        if (HeadDimension is int headDim) config.Json["head_dim"] = headDim;
        return config;
    }

    /// <summary>Checks that the sizes fit together (heads divide evenly, rotary width is even).</summary>
    /// <exception cref="ArgumentException">They do not.</exception>
    public void Validate()
    {
        if (VocabSize <= 0 || HiddenSize <= 0 || IntermediateSize <= 0 || NumHiddenLayers <= 0 || NumAttentionHeads <= 0 || KeyValueHeads <= 0)
            throw new ArgumentException("Llama sizes must be positive.");
        if (HeadDimension is null && HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException($"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}.");
        if (NumAttentionHeads % KeyValueHeads != 0)
            throw new ArgumentException($"num_attention_heads {NumAttentionHeads} is not divisible by num_key_value_heads {KeyValueHeads}.");
        if (HeadDim % 2 != 0)
            throw new ArgumentException($"The head width {HeadDim} must be even for rotary embeddings.");
    }
}
