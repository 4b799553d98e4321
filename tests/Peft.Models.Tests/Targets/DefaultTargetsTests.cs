using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Bert;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using Peft.Models.UseLite;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Targets;

/// <summary>
/// Each family's default target lists (<see cref="LlamaTargets"/>, <see cref="Gpt2Targets"/>, <see cref="BertTargets"/>,
/// <see cref="UseLiteTargets"/>) select exactly PEFT's modules (constants.py) on the stock models, which declare no adapter:
/// LoRA and IA3 on linear layers, LayerNorm tuning on the norms (through a stand-in norm method), prompt tuning on the input
/// embedding.
/// </summary>
public sealed class DefaultTargetsTests
{
    private static readonly LoRAOptions Lora = new(Rank: 2, Alpha: 4);

    private static IEnumerable<string> PerLayer(string prefix, int layers, params string[] suffixes)
        => Enumerable.Range(0, layers).SelectMany(i => suffixes.Select(s => $"{prefix}.{i}.{s}"));

    private static void AssertSelects(nn.Module model, TargetModules targets, PeftAdapterOptions options, IEnumerable<string> expected)
        => Assert.Equal(expected.Order(StringComparer.Ordinal), model.ResolveTargets(new PeftTargets(targets, options)).Selected.Order(StringComparer.Ordinal));

    [Fact]
    public void Llama_lists_are_peft_defaults()
    {
        using var model = TinyLlama.Create(1);
        Assert.Empty(model.AdapterNames());
        AssertSelects(model, LlamaTargets.LoRA, Lora, PerLayer("model.layers", 2, "self_attn.q_proj", "self_attn.v_proj"));
        AssertSelects(model, LlamaTargets.IA3, Lora, PerLayer("model.layers", 2, "self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"));
        AssertSelects(model, LlamaTargets.IA3FeedForward, Lora, PerLayer("model.layers", 2, "mlp.down_proj"));
        AssertSelects(model, LlamaTargets.LayerNormTuning, new LNTuningOptions(),
            PerLayer("model.layers", 2, "input_layernorm", "post_attention_layernorm").Append("model.norm"));
        AssertSelects(model, LlamaTargets.PromptEmbedding, new PromptTuningOptions(4), ["model.embed_tokens"]);
    }

    [Fact]
    public void Gpt2_lists_are_peft_defaults()
    {
        using var model = TinyGpt2.Create(1);
        Assert.Empty(model.AdapterNames());
        AssertSelects(model, Gpt2Targets.LoRA, Lora, PerLayer("transformer.h", 2, "attn.c_attn"));
        AssertSelects(model, Gpt2Targets.IA3, Lora, PerLayer("transformer.h", 2, "attn.c_attn", "mlp.c_proj"));
        AssertSelects(model, Gpt2Targets.IA3FeedForward, Lora, PerLayer("transformer.h", 2, "mlp.c_proj"));
        AssertSelects(model, Gpt2Targets.LayerNormTuning, new LNTuningOptions(), PerLayer("transformer.h", 2, "ln_1", "ln_2").Append("transformer.ln_f"));
        AssertSelects(model, Gpt2Targets.PromptEmbedding, new PromptTuningOptions(4), ["transformer.wte"]);
    }

    [Fact]
    public void Bert_lists_are_peft_defaults_and_every_layer_norm_for_ln_tuning()
    {
        using var model = TinyBert.Create(1);
        Assert.Empty(model.AdapterNames());
        const string layers = "bert.encoder.layer";
        AssertSelects(model, BertTargets.LoRA, Lora, PerLayer(layers, 2, "attention.self.query", "attention.self.value"));
        // "output.dense" is a dotted suffix of both attention.output.dense and the feed-forward's output.dense, as in PEFT.
        AssertSelects(model, BertTargets.IA3, Lora, PerLayer(layers, 2, "attention.self.key", "attention.self.value", "attention.output.dense", "output.dense"));
        AssertSelects(model, BertTargets.IA3FeedForward, Lora, PerLayer(layers, 2, "attention.output.dense", "output.dense"));
        AssertSelects(model, BertTargets.LayerNormTuning, new LNTuningOptions(),
            PerLayer(layers, 2, "attention.output.LayerNorm", "output.LayerNorm").Append("bert.embeddings.LayerNorm"));
        AssertSelects(model, BertTargets.PromptEmbedding, new PromptTuningOptions(4), ["bert.embeddings.word_embeddings"]);
    }

    [Fact]
    public void UseLite_lists_cover_the_projections_norms_and_token_embeddings()
    {
        manual_seed(1);
        using var encoder = new UseLiteEncoder();
        Assert.Empty(encoder.AdapterNames());
        AssertSelects(encoder, UseLiteTargets.LoRA, Lora, PerLayer("layers", 2, "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"));
        AssertSelects(encoder, UseLiteTargets.IA3, Lora, PerLayer("layers", 2, "k_proj", "v_proj", "fc2"));
        AssertSelects(encoder, UseLiteTargets.IA3FeedForward, Lora, PerLayer("layers", 2, "fc2"));
        AssertSelects(encoder, UseLiteTargets.LayerNormTuning, new LNTuningOptions(), PerLayer("layers", 2, "attention_norm", "ffn_norm"));
        AssertSelects(encoder, UseLiteTargets.PromptEmbedding, new PromptTuningOptions(4), ["embeddings"]);
    }

    [Fact]
    public void UseLite_bitfit_and_ssf_lists_cover_every_bias_and_the_papers_insertion_points()
    {
        manual_seed(1);
        using (var encoder = new UseLiteEncoder())
        {
            // Every module with a bias: the projections (residual_proj exists in layer 0 only), the norms and the pooler.
            var expected = PerLayer("layers", 2, "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "attention_norm", "ffn_norm")
                .Append("layers.0.residual_proj").Append("pooler");
            AssertSelects(encoder, UseLiteTargets.BitFit, new BitFitOptions(), expected);
            var withBias = encoder.named_modules().Where(m => m.module.named_parameters(recurse: false).Any(p => p.name == "bias")).Select(m => m.name).Order(StringComparer.Ordinal);
            Assert.Equal(expected.Order(StringComparer.Ordinal), withBias);
        }

        using (var encoder = new UseLiteEncoder())
        {
            AssertSelects(encoder, UseLiteTargets.SSF, new SSFOptions(),
                PerLayer("layers", 2, "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "attention_norm", "ffn_norm"));
        }
    }

    [Fact]
    public void Feed_forward_lists_are_subsets_of_the_ia3_lists()
    {
        foreach (var (ia3, ff) in new[] { (LlamaTargets.IA3, LlamaTargets.IA3FeedForward), (Gpt2Targets.IA3, Gpt2Targets.IA3FeedForward), (BertTargets.IA3, BertTargets.IA3FeedForward), (UseLiteTargets.IA3, UseLiteTargets.IA3FeedForward) })
        {
            Assert.Subset(ia3.Entries.ToHashSet(), ff.Entries.ToHashSet());   // PEFT: "feedforward_modules should be a subset of target_modules"
        }
    }
}
