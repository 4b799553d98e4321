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
/// Every family offers its stack through <see cref="ITransformerStack"/> (embedding modules and ordered blocks), and runs a
/// frozen bottom without the autograd graph: same outputs, same gradients for what trains, none for what is frozen.
/// </summary>
public sealed class TransformerStackTests
{
    public static IEnumerable<object[]> Families => new[] { "llama", "gpt2", "bert", "uselite" }.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(Families))]
    public void EachFamilyOffersItsEmbeddingsAndOrderedBlocks(string family)
    {
        using var model = Create(family);
        var (path, stack) = TransformerStacks.Find(model);
        var (expectedPath, blockPrefix, blocks) = family switch
        {
            "llama" => ("model", "model.layers.", 2),
            "gpt2" => ("transformer", "transformer.h.", TinyGpt2.Config().NLayer),
            "bert" => ("bert", "bert.encoder.layer.", TinyBert.Config().NumHiddenLayers),
            _ => ("", "layers.", UseLiteConfig.Layers),
        };
        Assert.Equal(expectedPath, path);
        Assert.Equal(blocks, stack.Blocks.Count);
        Assert.NotEmpty(stack.EmbeddingModules);
        var byModule = model.named_modules().ToDictionary(m => (object)m.module, m => m.name, ReferenceEqualityComparer.Instance);
        for (int i = 0; i < blocks; i++) Assert.Equal(blockPrefix + i, byModule[stack.Blocks[i]]);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void AFrozenBottomRunsWithoutGradientsAndChangesNothingElse(string family)
    {
        using var reference = Create(family);
        using var frozen = Create(family);
        var (_, stack) = TransformerStacks.Find(frozen);
        Assert.Equal(0, stack.GradientFreeBlocks());
        foreach (var m in stack.EmbeddingModules) m.Freeze();
        stack.Blocks[0].Freeze();
        Assert.Equal(1, stack.GradientFreeBlocks());
        using (no_grad()) Assert.Equal(0, stack.GradientFreeBlocks());   // nothing to save when no graph is recorded anyway

        using var y0 = Run(family, reference);
        using var y1 = Run(family, frozen);
        Assert.True(y0.eq(y1).all().item<bool>(), $"{family}: outputs changed by {(y0 - y1).abs().max().item<float>()}");

        using (var l0 = y0.pow(2).mean()) l0.backward();
        using (var l1 = y1.pow(2).mean()) l1.backward();
        var frozenParams = stack.EmbeddingModules.Append(stack.Blocks[0]).SelectMany(m => m.parameters()).ToHashSet(ReferenceEqualityComparer.Instance);
        var expected = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int compared = 0;
        foreach (var (name, p) in frozen.named_parameters())
        {
            if (frozenParams.Contains(p))
            {
                Assert.False(p.requires_grad);
                Assert.Null(p.grad);
                continue;
            }

            var e = expected[name].grad;
            Assert.NotNull(e);
            Assert.NotNull(p.grad);
            Assert.True((e! - p.grad!).abs().max().item<float>() <= 1e-6f, $"{family}: {name}'s gradient differs");
            compared++;
        }

        Assert.True(compared > 0);
    }

    [Fact]
    public void ABlockThatTrainsBelowAFrozenOneEndsThePrefix()
    {
        using var model = TinyLlama.Create(3);
        var (_, stack) = TransformerStacks.Find(model);
        foreach (var m in stack.EmbeddingModules) m.Freeze();
        stack.Blocks[1].Freeze();
        Assert.Equal(0, stack.GradientFreeBlocks());   // block 0 trains, so block 1's input needs the graph
        stack.Blocks[0].Freeze();
        Assert.Equal(2, stack.GradientFreeBlocks());
        stack.EmbeddingModules[0].Unfreeze(model);
        Assert.Equal(0, stack.GradientFreeBlocks());   // a trainable embedding (or a prompt on it) needs every block's graph
    }

    [Fact]
    public void ARunTimeFreezeHoldsThroughTheTrainabilityRuleAdaptersIncluded()
    {
        using var model = TinyLlama.CreateWithLoRA(4);
        var (_, stack) = TransformerStacks.Find(model);
        stack.Blocks[0].Freeze();
        var trainable = model.TrainableParameters().ToHashSet(ReferenceEqualityComparer.Instance);
        Assert.DoesNotContain(stack.Blocks[0].parameters(), p => trainable.Contains(p));   // its LoRA too, as under [Freeze]
        Assert.Contains(stack.Blocks[1].parameters(), p => trainable.Contains(p));
        Assert.True(stack.Blocks[0].IsFrozenAtRunTime());

        stack.Blocks[0].Unfreeze(model);
        trainable = model.TrainableParameters().ToHashSet(ReferenceEqualityComparer.Instance);
        Assert.Equal(
            stack.Blocks[1].parameters().Count(p => trainable.Contains(p)),
            stack.Blocks[0].parameters().Count(p => trainable.Contains(p)));
    }

    [Fact]
    public void AModelWithoutAStackIsRefusedWithTheFix()
    {
        using var plain = nn.Sequential(nn.Linear(4, 4));
        var ex = Assert.Throws<PeftConfigurationException>(() => TransformerStacks.Find(plain));
        Assert.Contains("ITransformerStack", ex.Message, StringComparison.Ordinal);
    }

    private static nn.Module Create(string family)
    {
        switch (family)
        {
            case "llama": return TinyLlama.Create(5);
            case "gpt2": return TinyGpt2.Create(5, tie: false);
            case "bert": return TinyBert.Create(5);
            default:
                manual_seed(5);
                var encoder = new UseLiteEncoder();
                encoder.eval();
                return encoder;
        }
    }

    private static Tensor Run(string family, nn.Module model)
    {
        var ids = torch.tensor(new long[] { 1, 5, 9, 2, 7, 3, 3, 8 }, new long[] { 2, 4 });
        return family switch
        {
            "llama" => ((LlamaForCausalLM)model).call(ids),
            "gpt2" => ((Gpt2LMHeadModel)model).call(ids),
            "bert" => ((BertForSequenceClassification)model).call(ids),
            _ => ((UseLiteEncoder)model).call(ids, torch.ones(2, 4, dtype: ScalarType.Bool)),
        };
    }
}
