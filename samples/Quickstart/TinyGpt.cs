using Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Quickstart;

/// <summary>Sizes of the byte-level decoder.</summary>
public sealed record TinyGptConfig(int VocabSize = 256, int ContextLength = 64, int Dim = 128, int Heads = 4, int Layers = 2);

/// <summary>Causal multi-head self-attention with LoRA on the query and value projections (as in the LoRA paper).</summary>
public sealed partial class CausalSelfAttention : Module<Tensor, Tensor>
{
    private readonly int _heads;

    [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> q_proj;
    private Module<Tensor, Tensor> k_proj;
    [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> v_proj;
    private Module<Tensor, Tensor> o_proj;

    public CausalSelfAttention(TinyGptConfig config) : base(nameof(CausalSelfAttention))
    {
        _heads = config.Heads;
        q_proj = Linear(config.Dim, config.Dim);
        k_proj = Linear(config.Dim, config.Dim);
        v_proj = Linear(config.Dim, config.Dim);
        o_proj = Linear(config.Dim, config.Dim);
        InitializePeft();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1], dim = x.shape[2];
        long headDim = dim / _heads;
        var q = q_proj.call(x).view(batch, time, _heads, headDim).transpose(1, 2);
        var k = k_proj.call(x).view(batch, time, _heads, headDim).transpose(1, 2);
        var v = v_proj.call(x).view(batch, time, _heads, headDim).transpose(1, 2);
        var y = functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        y = y.transpose(1, 2).contiguous().view(batch, time, dim);
        return o_proj.call(y).MoveToOuterDisposeScope();
    }
}

/// <summary>The feed-forward block; LoRA on its expansion layer.</summary>
public sealed partial class FeedForward : Module<Tensor, Tensor>
{
    [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> fc_in;
    private Module<Tensor, Tensor> fc_out;

    public FeedForward(TinyGptConfig config) : base(nameof(FeedForward))
    {
        fc_in = Linear(config.Dim, 4 * config.Dim);
        fc_out = Linear(4 * config.Dim, config.Dim);
        InitializePeft();
    }

    public override Tensor forward(Tensor x)
    {
        using var hidden = fc_in.call(x);
        using var activated = functional.gelu(hidden);
        return fc_out.call(activated);
    }
}

/// <summary>A pre-norm transformer block. No attributes: its adapters live in its children.</summary>
public sealed class Block : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> ln_1;
    private readonly CausalSelfAttention attn;
    private readonly Module<Tensor, Tensor> ln_2;
    private readonly FeedForward mlp;

    public Block(TinyGptConfig config) : base(nameof(Block))
    {
        ln_1 = LayerNorm(config.Dim);
        attn = new CausalSelfAttention(config);
        ln_2 = LayerNorm(config.Dim);
        mlp = new FeedForward(config);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + attn.call(ln_1.call(x));
        return (h + mlp.call(ln_2.call(h))).MoveToOuterDisposeScope();
    }
}

/// <summary>A byte-level GPT: token + position embeddings, blocks, final norm, language-model head.</summary>
public sealed partial class TinyGpt : Module<Tensor, Tensor>
{
    [Freeze] private Module<Tensor, Tensor> wte;
    [Freeze] private Module<Tensor, Tensor> wpe;
    private ModuleList<Block> h;
    private Module<Tensor, Tensor> ln_f;
    private Module<Tensor, Tensor> lm_head;

    public TinyGpt(TinyGptConfig config) : base(nameof(TinyGpt))
    {
        Config = config;
        wte = Embedding(config.VocabSize, config.Dim);
        wpe = Embedding(config.ContextLength, config.Dim);
        h = new ModuleList<Block>(Enumerable.Range(0, config.Layers).Select(_ => new Block(config)).ToArray());
        ln_f = LayerNorm(config.Dim);
        lm_head = Linear(config.Dim, config.VocabSize, hasBias: false);
        InitializePeft();
    }

    public TinyGptConfig Config { get; }

    /// <summary>Maps token ids [batch, time] to next-token logits [batch, time, vocab].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        long time = ids.shape[1];
        var positions = arange(time, device: ids.device);
        var x = wte.call(ids) + wpe.call(positions);
        foreach (var block in h) x = block.call(x);
        return lm_head.call(ln_f.call(x)).MoveToOuterDisposeScope();
    }
}
