using Peft.Runtime.Tests.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.PromptTuning;

public class PromptTuningTests
{
    /// <summary>A tiny language-model front end written as generated code for <c>[PromptTune(virtualTokens: 4)] embed</c>.</summary>
    private sealed class TinyLm : nn.Module<Tensor, Tensor>, IPeftModule
    {
        private static readonly PeftModuleDescriptor s_peftDescriptor = new(
            typeName: "TinyLm", frozenClass: false,
            frozenMembers: Array.Empty<string>(), trainableMembers: Array.Empty<string>(),
            adapters: new PeftAdapterDeclaration[] { new("embed", "default", "PromptTune") });

        private nn.Module<Tensor, Tensor> embed = nn.Embedding(20, 6);
        private nn.Module<Tensor, Tensor> lm_head = nn.Linear(6, 20);

        public TinyLm(string? initText = null)
            : base(nameof(TinyLm))
        {
            embed = AdaptedEmbedding.Wrap(embed, "embed")
                .WithPrompt("default", new PromptTuningOptions(VirtualTokens: 4, InitText: initText));
            register_module("embed", embed);
            register_module("lm_head", lm_head);
            PeftModel.ApplyTrainability(this);
        }

        public PeftModuleDescriptor PeftDescriptor => s_peftDescriptor;

        public AdaptedEmbedding Embed => (AdaptedEmbedding)embed;

        public override Tensor forward(Tensor ids)
        {
            using var e = embed.call(ids);
            return lm_head.call(e);
        }
    }

    [Fact]
    public void OutputPrependsThePromptToTheBaseEmbeddings()
    {
        torch.manual_seed(41);
        var model = new TinyLm();
        var layer = model.Embed;
        var prompt = layer.GetPrompt("default").PromptEmbeddings;
        Assert.Equal(new long[] { 4, 6 }, prompt.shape);

        using var ids = torch.tensor(new long[] { 1, 2, 3, 4, 5, 6 }).view(2, 3);
        using var output = layer.call(ids);
        Assert.Equal(new long[] { 2, 7, 6 }, output.shape);
        using var baseRows = layer.Weight.index_select(0, ids.flatten()).view(2, 3, 6);
        for (int b = 0; b < 2; b++)
        {
            using var head = output[b].narrow(0, 0, 4);
            using var tail = output[b].narrow(0, 4, 3);
            using var expectedTail = baseRows[b];
            TensorAssert.Equal(prompt, head);
            TensorAssert.Equal(expectedTail, tail);
        }

        using var single = torch.tensor(new long[] { 7, 8 });
        using var singleOut = layer.call(single);
        Assert.Equal(new long[] { 6, 6 }, singleOut.shape);
    }

    [Fact]
    public void DisabledPromptGivesTheBaseEmbedding()
    {
        torch.manual_seed(42);
        var model = new TinyLm();
        using var ids = torch.tensor(new long[] { 1, 2, 3 }).view(1, 3);
        using var expected = model.Embed.Weight.index_select(0, ids.flatten()).view(1, 3, 6);
        using (model.DisableAdapters())
        {
            Assert.Equal(0, model.VirtualTokenCount());
            using var output = model.Embed.call(ids);
            TensorAssert.Equal(expected, output);
        }

        Assert.Equal(4, model.VirtualTokenCount());
        using var enabled = model.Embed.call(ids);
        Assert.Equal(new long[] { 1, 7, 6 }, enabled.shape);
    }

    [Fact]
    public void PromptIsInitialisedStandardNormalAndIsTheOnlyTrainableTensor()
    {
        torch.manual_seed(43);
        var layer = AdaptedEmbedding.Wrap(nn.Embedding(10, 64), "embed").WithPrompt("default", new PromptTuningOptions(VirtualTokens: 64));
        var prompt = layer.GetPrompt("default").PromptEmbeddings;
        using var std = prompt.std();
        using var mean = prompt.mean();
        Assert.InRange(std.item<float>(), 0.95, 1.05);
        Assert.InRange(mean.item<float>(), -0.05, 0.05);

        var model = new TinyLm();
        var trainable = model.TrainableParameters().ToList();
        Assert.Single(trainable);
        Assert.Same(model.Embed.GetPrompt("default").PromptEmbeddings, trainable[0]);
        Assert.Equal("trainable params: 24 || all params: 284 || trainable%: 8.4507", model.GetTrainableSummary().ToString());
    }

    [Fact]
    public void GradientReachesOnlyThePrompt()
    {
        torch.manual_seed(44);
        var model = new TinyLm();
        using var ids = torch.tensor(new long[] { 1, 2, 3, 4 }).view(2, 2);
        using var logits = model.call(ids);
        Assert.Equal(new long[] { 2, 6, 20 }, logits.shape);
        using var loss = logits.square().mean();
        loss.backward();
        var prompt = model.Embed.GetPrompt("default").PromptEmbeddings;
        Assert.NotNull(prompt.grad);
        using var g = prompt.grad!.abs().sum();
        Assert.True(g.item<float>() > 0);
        Assert.Null(model.Embed.Weight.grad);
    }

    [Fact]
    public void MaskLabelsAndOutputsAreAdjustedForVirtualTokens()
    {
        var model = new TinyLm();
        using var mask = torch.tensor(new long[] { 1, 1, 0, 1, 1, 1 }).view(2, 3);
        using var extended = model.ExtendAttentionMask(mask);
        Assert.Equal(new long[] { 2, 7 }, extended.shape);
        Assert.Equal(ScalarType.Int64, extended.dtype);
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1 }, extended.data<long>().ToArray());

        using var labels = torch.tensor(new long[] { 5, 6, 7 }).view(1, 3);
        using var extendedLabels = model.ExtendLabels(labels);
        Assert.Equal(new long[] { -100, -100, -100, -100, 5, 6, 7 }, extendedLabels.data<long>().ToArray());

        using var hidden = torch.arange(2 * 7 * 2, dtype: ScalarType.Float32).view(2, 7, 2);
        using var stripped = model.StripVirtualTokens(hidden);
        Assert.Equal(new long[] { 2, 3, 2 }, stripped.shape);
        using var expected = hidden.narrow(1, 4, 3);
        TensorAssert.Equal(expected, stripped);

        using (model.DisableAdapters())
        {
            using var same = model.ExtendAttentionMask(mask);
            TensorAssert.Equal(mask, same);
        }
    }

    [Fact]
    public void InitializeFromTokenIdsRepeatsOrTruncatesToV()
    {
        var model = new TinyLm();
        var layer = model.Embed;
        var prompt = layer.GetPrompt("default").PromptEmbeddings;

        layer.InitializeFromTokenIds("default", new long[] { 3, 9, 11 });
        using (var idx = torch.tensor(new long[] { 3, 9, 11, 3 }))
        using (var expected = layer.Weight.index_select(0, idx))
        {
            TensorAssert.Equal(expected, prompt);
        }

        layer.InitializeFromTokenIds("default", new long[] { 1, 2, 3, 4, 5, 6 });
        using (var idx = torch.tensor(new long[] { 1, 2, 3, 4 }))
        using (var expected = layer.Weight.index_select(0, idx))
        {
            TensorAssert.Equal(expected, prompt);
        }

        var ex = Assert.Throws<PeftConfigurationException>(() => layer.InitializeFromTokenIds("default", new long[] { 25 }));
        Assert.Contains("outside the vocabulary [0, 20)", ex.Message);
        Assert.Throws<PeftConfigurationException>(() => layer.InitializeFromTokenIds("default", Array.Empty<long>()));
        Assert.Throws<PeftConfigurationException>(() => layer.InitializeFromTokenIds("other", new long[] { 1 }));
    }

    [Fact]
    public void InitializePromptsFromTextUsesTheTokenizerForAdaptersWithInitText()
    {
        var model = new TinyLm(initText: "classify the sentiment");
        var seen = new List<string>();
        int count = model.InitializePromptsFromText(text =>
        {
            seen.Add(text);
            return text.Split(' ').Select(w => (long)w.Length).ToArray();
        });

        Assert.Equal(1, count);
        Assert.Equal(new[] { "classify the sentiment" }, seen);
        using var idx = torch.tensor(new long[] { 8, 3, 9, 8 });
        using var expected = model.Embed.Weight.index_select(0, idx);
        TensorAssert.Equal(expected, model.Embed.GetPrompt("default").PromptEmbeddings);

        Assert.Equal(0, new TinyLm().InitializePromptsFromText(_ => throw new InvalidOperationException("not called")));
    }

    [Fact]
    public void SeveralPromptsCanBeSwitchedAndDeleted()
    {
        torch.manual_seed(45);
        var layer = AdaptedEmbedding.Wrap(nn.Embedding(10, 3), "embed")
            .WithPrompt("a", new PromptTuningOptions(VirtualTokens: 2))
            .WithPrompt("b", new PromptTuningOptions(VirtualTokens: 5));
        Assert.Equal("a", layer.ActiveAdapter);
        using var ids = torch.tensor(new long[] { 1, 2 }).view(1, 2);
        using (var y = layer.call(ids))
        {
            Assert.Equal(new long[] { 1, 4, 3 }, y.shape);
        }

        layer.SetActiveAdapter("b");
        using (var y = layer.call(ids))
        {
            Assert.Equal(new long[] { 1, 7, 3 }, y.shape);
            using var head = y[0].narrow(0, 0, 5);
            TensorAssert.Equal(layer.GetPrompt("b").PromptEmbeddings, head);
        }

        var dup = Assert.Throws<PeftConfigurationException>(() => layer.WithPrompt("a", new PromptTuningOptions()));
        Assert.Contains("already has an adapter named 'a'", dup.Message);

        layer.DeleteAdapter("b");
        Assert.Equal("a", layer.ActiveAdapter);
        Assert.Equal(new[] { "weight", "a.prompt_embeddings" }, layer.state_dict().Keys);
        Assert.Throws<PeftConfigurationException>(() => layer.WithPrompt("x", new PromptTuningOptions(VirtualTokens: 0)));
    }

    [Fact]
    public void WrapErrorsNameTheMember()
    {
        var ex = Assert.Throws<PeftConfigurationException>(() => AdaptedEmbedding.Wrap(null, "embed_tokens"));
        Assert.Contains("'embed_tokens'", ex.Message);
        Assert.Contains("null", ex.Message);

        using var linear = nn.Linear(3, 3);
        ex = Assert.Throws<PeftConfigurationException>(() => AdaptedEmbedding.Wrap(linear, "embed_tokens"));
        Assert.Contains("'embed_tokens'", ex.Message);
        Assert.Contains("TorchSharp.Modules.Linear", ex.Message);
        Assert.Contains("Embedding", ex.Message);
    }

    [Fact]
    public void BaseCheckpointKeysAreUnchanged()
    {
        var model = new TinyLm();
        Assert.Equal(
            new[] { "embed.weight", "embed.default.prompt_embeddings", "lm_head.weight", "lm_head.bias" },
            model.state_dict().Keys);
    }

    [Fact]
    public void ConvertingTheDtypeKeepsTheEmbeddingAndPromptInStep()
    {
        torch.manual_seed(46);
        var model = new TinyLm();
        using var ids = torch.tensor(new long[] { 1, 2 }).view(1, 2);
        using var before = model.Embed.call(ids);
        model.to(ScalarType.Float64);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        using var after = model.Embed.call(ids);
        Assert.Equal(ScalarType.Float64, after.dtype);
        TensorAssert.Close(before, after, 1e-6);
        Assert.Equal(4, model.state_dict().Count);
    }
}
