using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Bert;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using Peft.Models.UseLite;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Stacks;

/// <summary>
/// Every family's attention names the layer that projects its merged heads (<see cref="AttentionInsertions.OutputProjection"/>):
/// the registered module at the family's path, read as <c>[out, heads · headDim]</c> with head <c>h</c> in its own column
/// slice, still found after configuration wraps it, and adding <c>c</c> to one head's output changes the model exactly as
/// adding <c>W[:, slice_h] c</c> to that layer's bias does.
/// </summary>
public sealed class OutputProjectionTests
{
    public static IEnumerable<object[]> Families => new[]
    {
        new object[] { "llama", "model.layers.1.self_attn.o_proj" },
        new object[] { "gpt2", "transformer.h.1.attn.c_proj" },
        new object[] { "bert", "bert.encoder.layer.1.attention.output.dense" },
        new object[] { "uselite", "layers.1.out_proj" },
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void TheOutputProjectionIsTheFamilysLayerAndSurvivesWrapping(string family, string path)
    {
        using var model = Create(family);
        var (_, attentions) = TransformerBlocks.FindAttentions(model);
        var g = attentions[1].Geometry;
        var (module, weight, _) = attentions[1].OutputProjectionWeights();
        Assert.Same(Find(model, path), module);
        Assert.Equal((long)g.Heads * g.HeadDim, weight.shape[1]);

        string target = path[(path.LastIndexOf('.') + 1)..];
        model.ApplyTargets(new PeftTargets(TargetModules.Names(target), new LoRAOptions(Rank: 2)));
        var (wrapped, wrappedWeight, _) = attentions[1].OutputProjectionWeights();
        Assert.IsType<AdaptedLinear>(wrapped);
        Assert.Same(Find(model, path), wrapped);
        Assert.Equal(weight.shape, wrappedWeight.shape);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void AHeadOffsetIsABiasOfTheOutputProjection(string family, string path)
    {
        using var _ = no_grad();
        using var shifted = Create(family, bias: true);
        using var folded = Create(family, bias: true);
        var (_, attentions) = TransformerBlocks.FindAttentions(shifted);
        var g = attentions[1].Geometry;
        var offset = arange(g.HeadDim, dtype: ScalarType.Float32).mul(0.3).sin();
        attentions[1].Insert(new HeadOffset("offset", head: 1, offset));

        var (_, weight, bias) = TransformerBlocks.FindAttentions(folded).Attentions[1].OutputProjectionWeights();
        Assert.NotNull(bias);
        bias!.add_(weight[.., (g.HeadDim)..(2 * g.HeadDim)].matmul(offset));
        var ids = arange(8, dtype: ScalarType.Int64).mul(7).remainder(50).add(1).view(2, 4);
        var a = Forward(family, shifted, ids);
        var b = Forward(family, folded, ids);
        Assert.True((a - b).abs().max().item<float>() < 1e-4, $"{family} ({path}): the folded bias differs by {(a - b).abs().max().item<float>()}");
        Assert.True((a - Forward(family, Create(family, bias: true), ids)).abs().max().item<float>() > 1e-4, $"{family}: the offset changed nothing");
    }

    [Fact]
    public void AnAttentionWithoutOutputProjectionIsRefusedByName()
    {
        using var module = nn.Linear(4, 4);
        var insertions = new AttentionInsertions(module, new AttentionGeometry(3, 2, 2, 2, 4));
        var e = Assert.Throws<PeftConfigurationException>(() => insertions.OutputProjectionWeights());
        Assert.Contains("layer 3", e.Message, StringComparison.Ordinal);
        Assert.Contains("OutputProjection", e.Message, StringComparison.Ordinal);
        var wrong = new AttentionInsertions(module, new AttentionGeometry(3, 2, 2, 3, 4)) { OutputProjection = () => module };
        Assert.Contains("[out, 6]", Assert.Throws<PeftConfigurationException>(() => wrong.OutputProjectionWeights()).Message, StringComparison.Ordinal);
    }

    private sealed class HeadOffset : AttentionAdapter
    {
        private readonly int _head;
        private readonly Tensor _offset;

        public HeadOffset(string name, int head, Tensor offset) : base(name)
        {
            _head = head;
            _offset = offset;
        }

        public override bool AdjustsHeads => true;

        public override Tensor AdjustHeads(AttentionContext context, Tensor heads)
        {
            var add = zeros(context.Geometry.Heads, context.Geometry.HeadDim);
            add[_head] = _offset;
            return heads + add.view(1, context.Geometry.Heads, 1, context.Geometry.HeadDim);
        }
    }

    private static nn.Module Find(nn.Module model, string path) => model.named_modules().Single(m => m.name == path).module;

    private static nn.Module Create(string family, bool bias = false)
    {
        switch (family)
        {
            case "llama":
                if (!bias) return TinyLlama.Create(5);
                manual_seed(5);
                var llama = new LlamaForCausalLM(TinyLlama.Config() with { OutputBias = true });
                llama.eval();
                return llama;
            case "gpt2": return TinyGpt2.Create(5, tie: false);
            case "bert": return TinyBert.Create(5);
            default:
                manual_seed(5);
                var encoder = new UseLiteEncoder();
                encoder.eval();
                return encoder;
        }
    }

    private static Tensor Forward(string family, nn.Module model, Tensor ids) => family switch
    {
        "llama" => ((LlamaForCausalLM)model).Forward(ids, null),
        "gpt2" => ((Gpt2LMHeadModel)model).Forward(ids, null),
        "bert" => ((BertForSequenceClassification)model).call(ids),
        _ => ((UseLiteEncoder)model).call(ids, ones(ids.shape[0], ids.shape[1], dtype: ScalarType.Bool)),
    };
}
