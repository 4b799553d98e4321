using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Models.Llama;

/// <summary>
/// One pre-norm decoder layer (<c>model.layers.N</c>): <c>h = x + self_attn(input_layernorm(x))</c>, then
/// <c>h + mlp(post_attention_layernorm(h))</c>. <see cref="AdaptableAttribute"/>: both norms can be adapted by
/// configuration (LayerNorm tuning, <see cref="LlamaTargets.LayerNormTuning"/>).
/// </summary>
[Adaptable]
public sealed partial class LlamaDecoderLayer : nn.Module, ITransformerBlock
{
    private readonly LlamaAttention self_attn;
    private readonly LlamaMlp mlp;
    private Module<Tensor, Tensor> input_layernorm;
    private Module<Tensor, Tensor> post_attention_layernorm;

    /// <summary>Creates layer <paramref name="layer"/>.</summary>
    /// <param name="config">Model sizes.</param>
    /// <param name="layer">Layer index.</param>
    public LlamaDecoderLayer(LlamaConfig config, int layer) : base(nameof(LlamaDecoderLayer))
    {
        ArgumentNullException.ThrowIfNull(config);
        self_attn = new LlamaAttention(config, layer);
        mlp = new LlamaMlp(config);
        input_layernorm = new LlamaRmsNorm(config.HiddenSize, config.RmsNormEps);
        post_attention_layernorm = new LlamaRmsNorm(config.HiddenSize, config.RmsNormEps);
        InitializePeft();
        Insertions = new BlockInsertions(this, config.HiddenSize, config.HiddenSize, config.HiddenSize, config.HiddenSize) { Attention = self_attn.Insertions };
    }

    /// <summary>After <c>self_attn</c> and after <c>mlp</c>, before each residual add (the sub-layer's input is the residual
    /// stream before its norm).</summary>
    public BlockInsertions Insertions { get; }

    /// <summary>Runs the layer on hidden states [batch, time, hidden].</summary>
    /// <param name="x">Hidden states.</param>
    /// <param name="cos">Rotary cosine table for these positions.</param>
    /// <param name="sin">Rotary sine table.</param>
    /// <param name="cache">Key/value cache, or null.</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = x + Insertions.AfterAttention(x, self_attn.Forward(input_layernorm.call(x), cos, sin, cache));
        return (h + Insertions.AfterFeedForward(h, mlp.call(post_attention_layernorm.call(h)))).MoveToOuterDisposeScope();
    }
}
