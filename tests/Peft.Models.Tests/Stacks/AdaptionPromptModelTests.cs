using System.Text.Json.Nodes;
using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Bert;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using Peft.Models.UseLite;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Stacks;

/// <summary>
/// The adaption prompt on every family's attention insertion points: a zero gate is the base model bit for bit, a gate
/// changes it, generation with a KV cache matches the full forward (the prompt is not in the cache), only the prompts and
/// gates train, and PEFT's files (keys <c>base_model.model.&lt;attention&gt;.adaption_prompt</c>/<c>adaption_gate</c>, config
/// fields adapter_len, adapter_layers, target_modules) round-trip and are refused when they do not fit.
/// </summary>
public sealed class AdaptionPromptModelTests
{
    public static IEnumerable<object[]> Decoders => new[] { "llama", "gpt2" }.Select(f => new object[] { f });

    public static IEnumerable<object[]> Families => new[] { "llama", "gpt2", "bert", "uselite" }.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(Families))]
    public void AZeroGateIsTheBaseModelAndAGateChangesIt(string family)
    {
        using var _ = no_grad();
        using var plain = Create(family);
        using var model = Create(family);
        var inserted = model.AddAdaptionPrompt(new AdaptionPromptConfig(AdapterLen: 4, AdapterLayers: 2));
        Assert.Equal(2, inserted.Count);
        var ids = Ids(2, 6);
        Assert.True(TinyLlama.BitwiseEqual(Forward(family, plain, ids, null), Forward(family, model, ids, null)), $"{family}: zero gates changed the output");
        foreach (var (_, adapter) in inserted) adapter.Gate.fill_(0.7);
        Assert.True(MaxAbsDiff(Forward(family, plain, ids, null), Forward(family, model, ids, null)) > 1e-4, $"{family}: the gated prompt changed nothing");
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void GenerationWithACacheMatchesTheFullForward(string family)
    {
        using var _ = no_grad();
        using var model = Create(family);
        foreach (var (_, adapter) in model.AddAdaptionPrompt(new AdaptionPromptConfig(AdapterLen: 3, AdapterLayers: 2))) adapter.Gate.fill_(0.9);
        var ids = Ids(2, 9);
        var full = Forward(family, model, ids, null);
        using var cache = new KvCache(TransformerBlocks.Find(model).Blocks.Count);
        var parts = new List<Tensor> { Forward(family, model, ids[.., ..4], cache) };
        for (int t = 4; t < 9; t++) parts.Add(Forward(family, model, ids[.., t..(t + 1)], cache));
        Assert.Equal(9, cache.Length);   // the adapter tokens never enter the cache
        var cached = cat(parts, 1);
        Assert.True(MaxAbsDiff(full, cached) < 1e-5, $"{family}: cached generation differs by {MaxAbsDiff(full, cached)}");
    }

    [Fact]
    public void OnlyTheTopLayersPromptsAndGatesTrainAndReceiveGradients()
    {
        using var model = TinyLlama.Create(4);
        var inserted = model.AddAdaptionPrompt(new AdaptionPromptConfig(AdapterLen: 5, AdapterLayers: 1));
        Assert.Equal("model.layers.1.self_attn", Assert.Single(inserted).AttentionPath);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.Equal(["model.layers.1.self_attn.insertions.adapters.default.adaption_prompt", "model.layers.1.self_attn.insertions.adapters.default.adaption_gate"], trainable);
        Assert.Equal(5 * 32 + 1, model.TrainableParameters().Sum(p => p.numel()));
        using (var loss = model.Forward(Ids(1, 6), null).square().mean()) loss.backward();
        var adapter = inserted[0].Adapter;
        Assert.True(adapter.Gate.grad!.abs().item<float>() > 0, "the zero gate gets a gradient");
        Assert.Equal(0f, adapter.Prompt.grad!.abs().max().item<float>());   // behind a zero gate, as in LLaMA-Adapter's first step
    }

    [Theory]
    [InlineData("llama", "model.layers.1.self_attn", "self_attn")]
    [InlineData("gpt2", "transformer.h.1.attn", "attn")]
    [InlineData("bert", "bert.encoder.layer.1.attention.self", "self")]
    [InlineData("uselite", "layers.1", null)]
    public void PeftFilesRoundTripWithPeftsKeysAndFields(string family, string topAttention, string? targetModules)
    {
        string dir = TinyLlama.TempDir("adaption");
        try
        {
            using var model = Create(family);
            using (no_grad())
            {
                foreach (var (_, adapter) in model.AddAdaptionPrompt(new AdaptionPromptConfig(AdapterLen: 3, AdapterLayers: 1))) adapter.Gate.fill_(0.25);
            }

            model.SaveAdaptionPrompt(dir, options: new AdapterSaveOptions { TaskType = "CAUSAL_LM" });
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigFileName)))!.AsObject();
            Assert.Equal("ADAPTION_PROMPT", (string?)json["peft_type"]);
            Assert.Equal(3, (int)json["adapter_len"]!);
            Assert.Equal(1, (int)json["adapter_layers"]!);
            Assert.Equal(targetModules, (string?)json["target_modules"]);
            Assert.Equal("CAUSAL_LM", (string?)json["task_type"]);
            using (var reader = SafetensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsFileName)))
            {
                Assert.Equal([$"base_model.model.{topAttention}.adaption_gate", $"base_model.model.{topAttention}.adaption_prompt"], reader.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            }

            using var fresh = Create(family);
            fresh.LoadAdaptionPrompt(dir);
            using var _ = no_grad();
            var ids = Ids(2, 5);
            Assert.True(TinyLlama.BitwiseEqual(Forward(family, model, ids, null), Forward(family, fresh, ids, null)), $"{family}: the reloaded prompt differs");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void FilesThatDoNotFitAreRefusedByFieldAndNothingIsInserted()
    {
        string dir = TinyLlama.TempDir("adaption-bad");
        try
        {
            using var model = TinyLlama.Create(4);
            model.AddAdaptionPrompt(new AdaptionPromptConfig(AdapterLen: 3, AdapterLayers: 2));
            model.SaveAdaptionPrompt(dir);

            using var gpt2 = TinyGpt2.Create(4, tie: false);
            var family = Assert.Throws<AdapterFormatException>(() => gpt2.LoadAdaptionPrompt(dir));
            Assert.Contains("target_modules", family.Message, StringComparison.Ordinal);
            Assert.Empty(gpt2.InsertedAdapters());

            string config = Path.Combine(dir, AdapterFiles.ConfigFileName);
            File.WriteAllText(config, File.ReadAllText(config).Replace("\"adapter_layers\": 2", "\"adapter_layers\": 3", StringComparison.Ordinal));
            using var llama = TinyLlama.Create(4);
            var layers = Assert.Throws<AdapterFormatException>(() => llama.LoadAdaptionPrompt(dir));
            Assert.Contains("adapter_layers", layers.Message, StringComparison.Ordinal);

            File.WriteAllText(config, File.ReadAllText(config).Replace("\"adapter_layers\": 3", "\"adapter_layers\": 2", StringComparison.Ordinal).Replace("\"adapter_len\": 3", "\"adapter_len\": 4", StringComparison.Ordinal));
            var shapes = Assert.Throws<TensorMismatchException>(() => llama.LoadAdaptionPrompt(dir));
            Assert.Equal(2, shapes.ShapeMismatches.Count);
            Assert.Empty(llama.InsertedAdapters());

            var taken = Assert.Throws<PeftConfigurationException>(() => model.AddAdaptionPrompt(new AdaptionPromptConfig(2, 1)));
            Assert.Contains("adapterName", taken.Message, StringComparison.Ordinal);
            var deep = Assert.Throws<PeftConfigurationException>(() => llama.AddAdaptionPrompt(new AdaptionPromptConfig(2, 5)));
            Assert.Contains("AdapterLayers", deep.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void MergeRefusesItAndTheSwitchesReachIt()
    {
        using var _ = no_grad();
        using var plain = TinyLlama.Create(4);
        using var model = TinyLlama.Create(4);
        foreach (var (_, adapter) in model.AddAdaptionPrompt(new AdaptionPromptConfig(4, 2))) adapter.Gate.fill_(0.5);
        var ids = Ids(1, 5);
        using (model.DisableAdapters()) Assert.True(TinyLlama.BitwiseEqual(plain.Forward(ids, null), model.Forward(ids, null)));
        Assert.Throws<PeftConfigurationException>(() => model.Merge());
        model.DeleteAdapter(AdapterNames.Default);
        Assert.Empty(model.InsertedAdapters());
        Assert.True(TinyLlama.BitwiseEqual(plain.Forward(ids, null), model.Forward(ids, null)));
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

    private static Tensor Ids(long batch, long time) => arange(batch * time, dtype: ScalarType.Int64).mul(7).remainder(50).add(1).view(batch, time);

    private static Tensor Forward(string family, nn.Module model, Tensor ids, KvCache? cache) => family switch
    {
        "llama" => ((LlamaForCausalLM)model).Forward(ids, cache),
        "gpt2" => ((Gpt2LMHeadModel)model).Forward(ids, cache),
        "bert" => ((BertForSequenceClassification)model).call(ids),
        _ => ((UseLiteEncoder)model).call(ids, ones(ids.shape[0], ids.shape[1], dtype: ScalarType.Bool)),
    };

    private static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();
}
