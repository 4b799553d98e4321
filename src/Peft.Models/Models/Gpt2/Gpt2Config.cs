using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Checkpoints;

namespace Peft.Models.Gpt2;

/// <summary>
/// The sizes and options of a GPT-2 model, read from a Hugging Face <c>config.json</c> (<c>model_type</c> "gpt2").
/// Defaults are transformers' <c>GPT2Config</c> defaults (the 124M <c>gpt2</c> model) where a field is absent.
/// </summary>
public sealed record Gpt2Config
{
    /// <summary>The activation names <see cref="ActivationFunction"/> accepts (transformers' <c>ACT2FN</c> keys).</summary>
    public static IReadOnlyList<string> SupportedActivations { get; } =
        ["gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu", "quick_gelu", "relu", "silu", "swish", "tanh", "sigmoid", "linear"];

    /// <summary><c>vocab_size</c> (default 50257).</summary>
    public int VocabSize { get; init; } = 50257;

    /// <summary><c>n_embd</c>, the hidden width (default 768).</summary>
    public int NEmbd { get; init; } = 768;

    /// <summary><c>n_layer</c> (default 12).</summary>
    public int NLayer { get; init; } = 12;

    /// <summary><c>n_head</c> (default 12).</summary>
    public int NHead { get; init; } = 12;

    /// <summary><c>n_positions</c>, the learned position table's length (default 1024); generation refuses to go past it.</summary>
    public int NPositions { get; init; } = 1024;

    /// <summary><c>n_inner</c>, the MLP width; <see langword="null"/> (default) means 4 × <see cref="NEmbd"/>.</summary>
    public int? NInner { get; init; }

    /// <summary><c>layer_norm_epsilon</c> (default 1e-5).</summary>
    public double LayerNormEpsilon { get; init; } = 1e-5;

    /// <summary>
    /// <c>activation_function</c> (default "gelu_new", the tanh approximation of GELU); one of
    /// <see cref="SupportedActivations"/>.
    /// </summary>
    public string ActivationFunction { get; init; } = "gelu_new";

    /// <summary><c>resid_pdrop</c>: dropout after the attention and MLP projections, in training mode (default 0.1).</summary>
    public double ResidPdrop { get; init; } = 0.1;

    /// <summary><c>embd_pdrop</c>: dropout on the summed embeddings, in training mode (default 0.1).</summary>
    public double EmbdPdrop { get; init; } = 0.1;

    /// <summary><c>attn_pdrop</c>: dropout on the attention probabilities, in training mode (default 0.1).</summary>
    public double AttnPdrop { get; init; } = 0.1;

    /// <summary><c>scale_attn_weights</c>: divide attention scores by sqrt(head width) (default true).</summary>
    public bool ScaleAttnWeights { get; init; } = true;

    /// <summary><c>tie_word_embeddings</c>: the output head is <c>transformer.wte</c> (default true, as GPT-2).</summary>
    public bool TieWordEmbeddings { get; init; } = true;

    /// <summary>The MLP width actually used.</summary>
    public int InnerSize => NInner ?? 4 * NEmbd;

    /// <summary>The per-head width, <see cref="NEmbd"/> / <see cref="NHead"/>.</summary>
    public int HeadDim => NEmbd / NHead;

    /// <summary>
    /// Reads a GPT-2 configuration. Absent fields take transformers' defaults; options this model does not implement
    /// (<c>scale_attn_by_inverse_layer_idx</c>, <c>add_cross_attention</c>) are refused rather than ignored.
    /// </summary>
    /// <param name="config">A parsed <c>config.json</c>.</param>
    /// <exception cref="ArgumentException">
    /// <c>model_type</c> is present and not "gpt2", a field has the wrong type, an option is unsupported, or the sizes
    /// are inconsistent. The message names the field.
    /// </exception>
    public static Gpt2Config FromHf(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var json = config.Json;
        if (config.ModelType is { } type && type != "gpt2")
            throw new ArgumentException($"config.json has model_type \"{type}\", not \"gpt2\".", nameof(config));
        if (Bool(json, "scale_attn_by_inverse_layer_idx") == true)
            throw new ArgumentException("config.json sets scale_attn_by_inverse_layer_idx, which this GPT-2 model does not implement.", nameof(config));
        if (Bool(json, "add_cross_attention") == true)
            throw new ArgumentException("config.json sets add_cross_attention (a GPT-2 decoder with cross-attention), which this model does not implement.", nameof(config));

        var defaults = new Gpt2Config();
        var result = new Gpt2Config
        {
            VocabSize = Int(json, "vocab_size") ?? defaults.VocabSize,
            NEmbd = Int(json, "n_embd") ?? Int(json, "hidden_size") ?? defaults.NEmbd,
            NLayer = Int(json, "n_layer") ?? Int(json, "num_hidden_layers") ?? defaults.NLayer,
            NHead = Int(json, "n_head") ?? Int(json, "num_attention_heads") ?? defaults.NHead,
            NPositions = Int(json, "n_positions") ?? Int(json, "max_position_embeddings") ?? defaults.NPositions,
            NInner = Int(json, "n_inner"),
            LayerNormEpsilon = Double(json, "layer_norm_epsilon") ?? defaults.LayerNormEpsilon,
            ActivationFunction = String(json, "activation_function") ?? defaults.ActivationFunction,
            ResidPdrop = Double(json, "resid_pdrop") ?? defaults.ResidPdrop,
            EmbdPdrop = Double(json, "embd_pdrop") ?? defaults.EmbdPdrop,
            AttnPdrop = Double(json, "attn_pdrop") ?? defaults.AttnPdrop,
            ScaleAttnWeights = Bool(json, "scale_attn_weights") ?? defaults.ScaleAttnWeights,
            TieWordEmbeddings = config.TiesWordEmbeddings,
        };
        result.Validate();
        return result;
    }

    /// <summary>Writes this configuration as a transformers <c>GPT2Config</c> config.json (<c>GPT2LMHeadModel</c>).</summary>
    public HfConfig ToHf()
    {
        var config = new HfConfig { ModelType = "gpt2", TorchDType = "float32" };
        var json = config.Json;
        json["architectures"] = new JsonArray("GPT2LMHeadModel");
        json["vocab_size"] = VocabSize;
        json["n_embd"] = NEmbd;
        json["n_layer"] = NLayer;
        json["n_head"] = NHead;
        json["n_positions"] = NPositions;
        json["n_ctx"] = NPositions;
        json["n_inner"] = NInner;
        json["layer_norm_epsilon"] = LayerNormEpsilon;
        json["activation_function"] = ActivationFunction;
        json["resid_pdrop"] = ResidPdrop;
        json["embd_pdrop"] = EmbdPdrop;
        json["attn_pdrop"] = AttnPdrop;
        json["scale_attn_weights"] = ScaleAttnWeights;
        json["tie_word_embeddings"] = TieWordEmbeddings;
        json["bos_token_id"] = VocabSize - 1;
        json["eos_token_id"] = VocabSize - 1;
        return config;
    }

    /// <summary>Checks that the sizes fit together and the activation is known.</summary>
    /// <exception cref="ArgumentException">They do not.</exception>
    public void Validate()
    {
        if (VocabSize <= 0 || NEmbd <= 0 || NLayer <= 0 || NHead <= 0 || NPositions <= 0 || InnerSize <= 0)
            throw new ArgumentException("GPT-2 sizes (vocab_size, n_embd, n_layer, n_head, n_positions, n_inner) must be positive.");
        if (NEmbd % NHead != 0)
            throw new ArgumentException($"n_embd {NEmbd} is not divisible by n_head {NHead}.");
        if (!SupportedActivations.Contains(ActivationFunction, StringComparer.Ordinal))
            throw new ArgumentException($"activation_function \"{ActivationFunction}\" is not supported (supported: {string.Join(", ", SupportedActivations)}).");
        foreach (var (name, p) in new[] { ("resid_pdrop", ResidPdrop), ("embd_pdrop", EmbdPdrop), ("attn_pdrop", AttnPdrop) })
        {
            if (!(p >= 0 && p < 1)) throw new ArgumentException($"{name} must be in [0, 1), not {p}.");
        }
    }

    private static JsonNode? Node(JsonObject json, string key) => json.TryGetPropertyValue(key, out var node) ? node : null;

    private static int? Int(JsonObject json, string key)
    {
        var node = Node(json, key);
        if (node is null) return null;
        if (node.GetValueKind() == JsonValueKind.Number && node.AsValue().TryGetValue<int>(out var value)) return value;
        if (node.GetValueKind() == JsonValueKind.Number && node.GetValue<double>() is var d && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue) return (int)d;
        throw new ArgumentException($"config.json: \"{key}\" must be an integer, not {node.ToJsonString()}.");
    }

    private static double? Double(JsonObject json, string key)
    {
        var node = Node(json, key);
        if (node is null) return null;
        return node.GetValueKind() == JsonValueKind.Number
            ? node.GetValue<double>()
            : throw new ArgumentException($"config.json: \"{key}\" must be a number, not {node.ToJsonString()}.");
    }

    private static bool? Bool(JsonObject json, string key)
    {
        var node = Node(json, key);
        if (node is null) return null;
        return node.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ArgumentException($"config.json: \"{key}\" must be true or false, not {node.ToJsonString()}."),
        };
    }

    private static string? String(JsonObject json, string key)
    {
        var node = Node(json, key);
        if (node is null) return null;
        return node.GetValueKind() == JsonValueKind.String
            ? node.GetValue<string>()
            : throw new ArgumentException($"config.json: \"{key}\" must be a string, not {node.ToJsonString()}.");
    }
}
