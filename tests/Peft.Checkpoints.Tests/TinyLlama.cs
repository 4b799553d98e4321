using Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Checkpoints.Tests;

/// <summary>Sizes of the tiny Llama-layout model (2 layers, grouped-query attention with 2 query heads per KV head).</summary>
public static class TinyLlamaConfig
{
    public const int Vocab = 24;
    public const int Hidden = 16;
    public const int Heads = 2;
    public const int KvHeads = 1;
    public const int HeadDim = Hidden / Heads;
    public const int Intermediate = 24;
    public const int Layers = 2;
    public const double Eps = 1e-6;

    /// <summary>A config.json as transformers writes it for LlamaConfig.</summary>
    public static HfConfig Create(bool tie = false) => HfConfig.Parse($$"""
        {
          "architectures": ["LlamaForCausalLM"],
          "model_type": "llama",
          "hidden_size": {{Hidden}},
          "intermediate_size": {{Intermediate}},
          "num_attention_heads": {{Heads}},
          "num_key_value_heads": {{KvHeads}},
          "num_hidden_layers": {{Layers}},
          "vocab_size": {{Vocab}},
          "rms_norm_eps": 1e-06,
          "rope_theta": 10000.0,
          "hidden_act": "silu",
          "tie_word_embeddings": {{(tie ? "true" : "false")}},
          "torch_dtype": "float32"
        }
        """);
}

/// <summary>Llama's RMSNorm with its <c>weight</c> parameter.</summary>
public sealed class RmsNorm : Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public RmsNorm(int dim) : base(nameof(RmsNorm))
    {
        weight = Parameter(ones(dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var variance = x.pow(2).mean(new long[] { -1 }, keepdim: true);
        return (x * rsqrt(variance + TinyLlamaConfig.Eps) * weight).MoveToOuterDisposeScope();
    }
}

/// <summary>Shared attention math (no rotary embedding: the checkpoint layout is what matters here).</summary>
internal static class AttentionMath
{
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Module<Tensor, Tensor> o_proj)
    {
        long batch = q.shape[0], time = q.shape[1];
        var qh = q.view(batch, time, TinyLlamaConfig.Heads, TinyLlamaConfig.HeadDim).transpose(1, 2);
        var kh = k.view(batch, time, TinyLlamaConfig.KvHeads, TinyLlamaConfig.HeadDim).transpose(1, 2)
            .repeat_interleave(TinyLlamaConfig.Heads / TinyLlamaConfig.KvHeads, dim: 1);
        var vh = v.view(batch, time, TinyLlamaConfig.KvHeads, TinyLlamaConfig.HeadDim).transpose(1, 2)
            .repeat_interleave(TinyLlamaConfig.Heads / TinyLlamaConfig.KvHeads, dim: 1);
        var attended = functional.scaled_dot_product_attention(qh, kh, vh, is_casual: true);
        return o_proj.call(attended.transpose(1, 2).contiguous().view(batch, time, TinyLlamaConfig.Hidden));
    }
}

/// <summary>Self-attention with LoRA on q_proj and v_proj, written with our attributes.</summary>
public sealed partial class AdaptedAttention : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4)] private Module<Tensor, Tensor> q_proj;
    private Module<Tensor, Tensor> k_proj;
    [LoRA(rank: 2, alpha: 4)] private Module<Tensor, Tensor> v_proj;
    private Module<Tensor, Tensor> o_proj;

    public AdaptedAttention() : base(nameof(AdaptedAttention))
    {
        q_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Hidden, hasBias: false);
        k_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.KvHeads * TinyLlamaConfig.HeadDim, hasBias: false);
        v_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.KvHeads * TinyLlamaConfig.HeadDim, hasBias: false);
        o_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Hidden, hasBias: false);
        InitializePeft();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return AttentionMath.Attend(q_proj.call(x), k_proj.call(x), v_proj.call(x), o_proj).MoveToOuterDisposeScope();
    }
}

/// <summary>The same attention without attributes.</summary>
public sealed class PlainAttention : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> q_proj;
    private readonly Module<Tensor, Tensor> k_proj;
    private readonly Module<Tensor, Tensor> v_proj;
    private readonly Module<Tensor, Tensor> o_proj;

    public PlainAttention() : base(nameof(PlainAttention))
    {
        q_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Hidden, hasBias: false);
        k_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.KvHeads * TinyLlamaConfig.HeadDim, hasBias: false);
        v_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.KvHeads * TinyLlamaConfig.HeadDim, hasBias: false);
        o_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Hidden, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return AttentionMath.Attend(q_proj.call(x), k_proj.call(x), v_proj.call(x), o_proj).MoveToOuterDisposeScope();
    }
}

/// <summary>SwiGLU feed-forward with LoRA on down_proj.</summary>
public sealed partial class AdaptedMlp : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> gate_proj;
    private Module<Tensor, Tensor> up_proj;
    [LoRA(rank: 2, alpha: 4)] private Module<Tensor, Tensor> down_proj;

    public AdaptedMlp() : base(nameof(AdaptedMlp))
    {
        gate_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Intermediate, hasBias: false);
        up_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Intermediate, hasBias: false);
        down_proj = Linear(TinyLlamaConfig.Intermediate, TinyLlamaConfig.Hidden, hasBias: false);
        InitializePeft();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(functional.silu(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>The same feed-forward without attributes.</summary>
public sealed class PlainMlp : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> gate_proj;
    private readonly Module<Tensor, Tensor> up_proj;
    private readonly Module<Tensor, Tensor> down_proj;

    public PlainMlp() : base(nameof(PlainMlp))
    {
        gate_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Intermediate, hasBias: false);
        up_proj = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Intermediate, hasBias: false);
        down_proj = Linear(TinyLlamaConfig.Intermediate, TinyLlamaConfig.Hidden, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(functional.silu(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>A pre-norm decoder layer (Hugging Face names: self_attn, mlp, input_layernorm, post_attention_layernorm).</summary>
public sealed class TinyDecoderLayer : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> self_attn;
    private readonly Module<Tensor, Tensor> mlp;
    private readonly RmsNorm input_layernorm;
    private readonly RmsNorm post_attention_layernorm;

    public TinyDecoderLayer(bool adapted) : base(nameof(TinyDecoderLayer))
    {
        self_attn = adapted ? new AdaptedAttention() : new PlainAttention();
        mlp = adapted ? new AdaptedMlp() : new PlainMlp();
        input_layernorm = new RmsNorm(TinyLlamaConfig.Hidden);
        post_attention_layernorm = new RmsNorm(TinyLlamaConfig.Hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn.call(input_layernorm.call(x));
        return (h + mlp.call(post_attention_layernorm.call(h))).MoveToOuterDisposeScope();
    }
}

/// <summary>LlamaModel: embed_tokens, layers, norm, and a non-persistent rotary buffer (never in a checkpoint).</summary>
public sealed class TinyLlamaModel : Module<Tensor, Tensor>
{
    private readonly Embedding embed_tokens;
    private readonly ModuleList<TinyDecoderLayer> layers;
    private readonly RmsNorm norm;

    public TinyLlamaModel(bool adapted) : base(nameof(TinyLlamaModel))
    {
        embed_tokens = Embedding(TinyLlamaConfig.Vocab, TinyLlamaConfig.Hidden);
        layers = new ModuleList<TinyDecoderLayer>(Enumerable.Range(0, TinyLlamaConfig.Layers).Select(_ => new TinyDecoderLayer(adapted)).ToArray());
        norm = new RmsNorm(TinyLlamaConfig.Hidden);
        RegisterComponents();
        register_buffer("inv_freq", arange(0, TinyLlamaConfig.HeadDim, 2, dtype: float32), persistent: false);
    }

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var x = embed_tokens.call(ids);
        foreach (var layer in layers) x = layer.call(x);
        return norm.call(x).MoveToOuterDisposeScope();
    }
}

/// <summary>LlamaForCausalLM: <c>model</c> plus <c>lm_head</c>.</summary>
public sealed class TinyLlamaForCausalLM : Module<Tensor, Tensor>
{
    private readonly TinyLlamaModel model;
    private readonly Linear lm_head;

    public TinyLlamaForCausalLM(bool adapted = false) : base(nameof(TinyLlamaForCausalLM))
    {
        model = new TinyLlamaModel(adapted);
        lm_head = Linear(TinyLlamaConfig.Hidden, TinyLlamaConfig.Vocab, hasBias: false);
        RegisterComponents();
    }

    /// <summary>The decoder without the head.</summary>
    public TinyLlamaModel Decoder => model;

    /// <summary>Builds a model whose random weights depend only on <paramref name="seed"/>.</summary>
    public static TinyLlamaForCausalLM Create(int seed, bool adapted = false)
    {
        manual_seed(seed);
        var m = new TinyLlamaForCausalLM(adapted);
        // RMSNorm weights start at one; make them random too so a missed copy is visible.
        using (no_grad())
        {
            foreach (var (name, p) in m.named_parameters())
            {
                if (name.EndsWith("layernorm.weight", StringComparison.Ordinal) || name.EndsWith("norm.weight", StringComparison.Ordinal))
                {
                    p.uniform_(0.5, 1.5);
                }
            }
        }
        m.eval();
        return m;
    }

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return lm_head.call(model.call(ids)).MoveToOuterDisposeScope();
    }
}
