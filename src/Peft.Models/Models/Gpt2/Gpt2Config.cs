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
    /// <exception cref="CheckpointFormatException">
    /// <c>model_type</c> is present and not "gpt2", a field has the wrong type or is out of range, an option is
    /// unsupported, or the sizes are inconsistent. The message names config.json's path, the field and the expected value.
    /// </exception>
    public static Gpt2Config FromHf(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.ModelType is { } type && type != "gpt2")
            throw config.Invalid("model_type", $"\"model_type\" is \"{type}\", not \"gpt2\"");
        if (config.ReadBool("scale_attn_by_inverse_layer_idx") == true)
            throw config.Invalid("scale_attn_by_inverse_layer_idx", "\"scale_attn_by_inverse_layer_idx\" is true, which this GPT-2 model does not implement (expected false or absent)");
        if (config.ReadBool("add_cross_attention") == true)
            throw config.Invalid("add_cross_attention", "\"add_cross_attention\" is true (a GPT-2 decoder with cross-attention), which this model does not implement (expected false or absent)");

        var defaults = new Gpt2Config();
        int? Size(string key, string alternative) => config.ReadInt(key, 1) ?? config.ReadInt(alternative, 1);
        double? Probability(string key) => config.ReadNumber(key, 0, minInclusive: true, max: 1);
        var result = new Gpt2Config
        {
            VocabSize = config.ReadInt("vocab_size", 1) ?? defaults.VocabSize,
            NEmbd = Size("n_embd", "hidden_size") ?? defaults.NEmbd,
            NLayer = Size("n_layer", "num_hidden_layers") ?? defaults.NLayer,
            NHead = Size("n_head", "num_attention_heads") ?? defaults.NHead,
            NPositions = Size("n_positions", "max_position_embeddings") ?? defaults.NPositions,
            NInner = config.ReadInt("n_inner", 1),
            LayerNormEpsilon = config.ReadNumber("layer_norm_epsilon", 0, minInclusive: false, max: 1) ?? defaults.LayerNormEpsilon,
            ActivationFunction = config.ReadString("activation_function") ?? defaults.ActivationFunction,
            ResidPdrop = Probability("resid_pdrop") ?? defaults.ResidPdrop,
            EmbdPdrop = Probability("embd_pdrop") ?? defaults.EmbdPdrop,
            AttnPdrop = Probability("attn_pdrop") ?? defaults.AttnPdrop,
            ScaleAttnWeights = config.ReadBool("scale_attn_weights") ?? defaults.ScaleAttnWeights,
            TieWordEmbeddings = config.TiesWordEmbeddings,
        };
        if (result.Problems().FirstOrDefault() is var (field, problem) && field is not null)
            throw config.Invalid(field, problem);
        return result;
    }

    /// <summary>
    /// The base tensors (model state-dict names and [out, in] shapes, no adapters) a <see cref="Gpt2LMHeadModel"/> built
    /// from this configuration has, with the config.json keys behind each: for <see cref="HfCheckpoint.EnsureFits"/> with
    /// <see cref="Gpt2LMHeadModel.LoadOptions"/>, before the model is allocated. Lazy.
    /// </summary>
    internal IEnumerable<ExpectedTensor> ExpectedTensors()
    {
        long e = NEmbd, inner = InnerSize;
        string[] block = ["n_layer", "n_embd"];
        string[] mlp = ["n_layer", "n_embd", "n_inner"];
        yield return new("transformer.wte.weight", [VocabSize, e], ["vocab_size", "n_embd"]);
        yield return new("transformer.wpe.weight", [NPositions, e], ["n_positions", "n_embd"]);
        for (int i = 0; i < NLayer; i++)
        {
            string p = $"transformer.h.{i}.";
            yield return new(p + "ln_1.weight", [e], block);
            yield return new(p + "ln_1.bias", [e], block);
            yield return new(p + "attn.c_attn.weight", [3 * e, e], block);
            yield return new(p + "attn.c_attn.bias", [3 * e], block);
            yield return new(p + "attn.c_proj.weight", [e, e], block);
            yield return new(p + "attn.c_proj.bias", [e], block);
            yield return new(p + "ln_2.weight", [e], block);
            yield return new(p + "ln_2.bias", [e], block);
            yield return new(p + "mlp.c_fc.weight", [inner, e], mlp);
            yield return new(p + "mlp.c_fc.bias", [inner], mlp);
            yield return new(p + "mlp.c_proj.weight", [e, inner], mlp);
            yield return new(p + "mlp.c_proj.bias", [e], mlp);
        }
        yield return new("transformer.ln_f.weight", [e], ["n_embd"]);
        yield return new("transformer.ln_f.bias", [e], ["n_embd"]);
        if (!TieWordEmbeddings) yield return new("lm_head.weight", [VocabSize, e], ["vocab_size", "n_embd", "tie_word_embeddings"]);
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
        if (Problems().FirstOrDefault() is var (_, problem) && problem is not null)
            throw new ArgumentException(problem);
    }

    /// <summary>Every inconsistency, as (config.json key, message naming the value and what is expected).</summary>
    private IEnumerable<(string Field, string Problem)> Problems()
    {
        foreach (var (key, value) in new[] { ("vocab_size", VocabSize), ("n_embd", NEmbd), ("n_layer", NLayer), ("n_head", NHead),
            ("n_positions", NPositions), ("n_inner", InnerSize) })
        {
            if (value <= 0)
                yield return (key, $"\"{key}\" must be an integer >= 1, not {value}; GPT-2 sizes (vocab_size, n_embd, n_layer, n_head, n_positions, n_inner) must be positive");
        }
        if (NEmbd > 0 && NHead > 0 && NEmbd % NHead != 0)
            yield return ("n_head", $"n_embd {NEmbd} is not divisible by n_head {NHead}");
        if (3L * NEmbd > int.MaxValue)
            yield return ("n_embd", $"\"n_embd\" {NEmbd} is too large: c_attn has 3 × n_embd outputs (at most {int.MaxValue})");
        if (!SupportedActivations.Contains(ActivationFunction, StringComparer.Ordinal))
            yield return ("activation_function", $"\"activation_function\" \"{ActivationFunction}\" is not supported (supported: {string.Join(", ", SupportedActivations)})");
        if (!(LayerNormEpsilon > 0 && LayerNormEpsilon <= 1))
            yield return ("layer_norm_epsilon", $"\"layer_norm_epsilon\" must be a finite number in (0, 1], not {LayerNormEpsilon}");
        foreach (var (name, p) in new[] { ("resid_pdrop", ResidPdrop), ("embd_pdrop", EmbdPdrop), ("attn_pdrop", AttnPdrop) })
        {
            if (!(p >= 0 && p < 1)) yield return (name, $"\"{name}\" must be in [0, 1), not {p}");
        }
    }
}
