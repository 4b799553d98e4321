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
    /// <exception cref="CheckpointFormatException">A required field is missing, a field has the wrong type or is out of
    /// range, the sizes are inconsistent, or the config asks for something this port does not model. The message names
    /// config.json's path (<see cref="HfConfig.SourcePath"/>), the field and the expected value.</exception>
    public static LlamaConfig FromHf(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int Required(int? value, string key) =>
            value ?? throw config.Invalid(key, $"\"{key}\" is missing; a Llama-style model needs it (an integer >= 1)");

        int? headDim = config.ReadInt("head_dim", 1);
        if (config.Json["rope_scaling"] is { } scaling)
            throw config.Invalid("rope_scaling", $"\"rope_scaling\" is {scaling.ToJsonString()}; scaled rotary embeddings (e.g. Llama 3.1's \"llama3\" type) are not modelled, so the outputs would be wrong (expected null or absent)");
        if (config.ReadBool("use_sliding_window") == true)
            throw config.Invalid("use_sliding_window", "\"use_sliding_window\" is true; sliding-window attention is not modelled (expected false or absent)");
        if (config.ReadString("hidden_act") is { } act && act != "silu")
            throw config.Invalid("hidden_act", $"\"hidden_act\" is \"{act}\"; this Llama-style port computes SwiGLU with SiLU only (expected \"silu\")");
        bool qwen2 = config.ModelType == "qwen2";
        bool attentionBias = config.ReadBool("attention_bias") ?? false;
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
            MlpBias = config.ReadBool("mlp_bias") ?? false,
        };
        if (result.Problems().FirstOrDefault() is var (field, problem) && field is not null)
            throw config.Invalid(field, problem);
        return result;
    }

    /// <summary>
    /// The base tensors (state-dict names and shapes, no adapters) a <see cref="LlamaForCausalLM"/> built from this
    /// configuration has, in state-dict order, with the config.json keys behind each: for
    /// <see cref="HfCheckpoint.EnsureFits"/> before the model is allocated. Lazy, so 2^31 layers cost nothing to describe.
    /// </summary>
    internal IEnumerable<ExpectedTensor> ExpectedTensors()
    {
        long h = HiddenSize, q = (long)NumAttentionHeads * HeadDim, kv = (long)KeyValueHeads * HeadDim, ff = IntermediateSize;
        string[] attention = ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim"];
        string[] mlp = ["num_hidden_layers", "hidden_size", "intermediate_size"];
        string[] norm = ["num_hidden_layers", "hidden_size"];
        yield return new("model.embed_tokens.weight", [VocabSize, h], ["vocab_size", "hidden_size"]);
        for (int i = 0; i < NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            yield return new(p + "self_attn.q_proj.weight", [q, h], attention);
            if (QkvBias) yield return new(p + "self_attn.q_proj.bias", [q], attention);
            yield return new(p + "self_attn.k_proj.weight", [kv, h], attention);
            if (QkvBias) yield return new(p + "self_attn.k_proj.bias", [kv], attention);
            yield return new(p + "self_attn.v_proj.weight", [kv, h], attention);
            if (QkvBias) yield return new(p + "self_attn.v_proj.bias", [kv], attention);
            yield return new(p + "self_attn.o_proj.weight", [h, q], attention);
            if (OutputBias) yield return new(p + "self_attn.o_proj.bias", [h], attention);
            yield return new(p + "mlp.gate_proj.weight", [ff, h], mlp);
            if (MlpBias) yield return new(p + "mlp.gate_proj.bias", [ff], mlp);
            yield return new(p + "mlp.up_proj.weight", [ff, h], mlp);
            if (MlpBias) yield return new(p + "mlp.up_proj.bias", [ff], mlp);
            yield return new(p + "mlp.down_proj.weight", [h, ff], mlp);
            if (MlpBias) yield return new(p + "mlp.down_proj.bias", [h], mlp);
            yield return new(p + "input_layernorm.weight", [h], norm);
            yield return new(p + "post_attention_layernorm.weight", [h], norm);
        }
        yield return new("model.norm.weight", [h], ["hidden_size"]);
        if (!TieWordEmbeddings) yield return new("lm_head.weight", [VocabSize, h], ["vocab_size", "hidden_size", "tie_word_embeddings"]);
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

    /// <summary>Checks that the sizes fit together (positive sizes, heads divide evenly, rotary width is even, finite positive rotary base and epsilon).</summary>
    /// <exception cref="ArgumentException">They do not.</exception>
    public void Validate()
    {
        if (Problems().FirstOrDefault() is var (_, problem) && problem is not null)
            throw new ArgumentException(problem);
    }

    /// <summary>Every inconsistency, as (config.json key, message naming the value and what is expected).</summary>
    private IEnumerable<(string Field, string Problem)> Problems()
    {
        foreach (var (key, value) in new[] { ("vocab_size", VocabSize), ("hidden_size", HiddenSize), ("intermediate_size", IntermediateSize),
            ("num_hidden_layers", NumHiddenLayers), ("num_attention_heads", NumAttentionHeads), ("num_key_value_heads", KeyValueHeads),
            ("max_position_embeddings", MaxPositionEmbeddings) })
        {
            if (value <= 0) yield return (key, $"\"{key}\" must be an integer >= 1, not {value}; Llama sizes must be positive");
        }
        if (HeadDimension is <= 0) yield return ("head_dim", $"\"head_dim\" must be an integer >= 1, not {HeadDimension}");
        if (!(RmsNormEps > 0 && RmsNormEps <= 1)) yield return ("rms_norm_eps", $"\"rms_norm_eps\" must be a finite number in (0, 1], not {RmsNormEps}");
        if (!(RopeTheta > 0 && double.IsFinite(RopeTheta))) yield return ("rope_theta", $"\"rope_theta\" must be a finite number > 0, not {RopeTheta}");
        if (NumAttentionHeads <= 0 || KeyValueHeads <= 0 || HiddenSize <= 0) yield break;
        if (HeadDimension is null && HiddenSize % NumAttentionHeads != 0)
            yield return ("num_attention_heads", $"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads} (set \"head_dim\" or use a divisor)");
        if (NumAttentionHeads % KeyValueHeads != 0)
            yield return ("num_key_value_heads", $"num_attention_heads {NumAttentionHeads} is not divisible by num_key_value_heads {KeyValueHeads}");
        if (HeadDim % 2 != 0)
            yield return (HeadDimension is null ? "num_attention_heads" : "head_dim", $"the head width {HeadDim} must be even for rotary embeddings (\"head_dim\", or hidden_size / num_attention_heads)");
        if ((long)NumAttentionHeads * HeadDim > int.MaxValue || (long)KeyValueHeads * HeadDim > int.MaxValue)
            yield return ("head_dim", $"num_attention_heads {NumAttentionHeads} × head width {HeadDim} does not fit a layer size (at most {int.MaxValue})");
    }
}
