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
/// LoFiT on the four families through the attention insertion points: identity at a zero init, the two stages (scales on
/// every head with the L1 term, top-K selection by ‖A‖₂, offsets on the selected heads only), merge into the output
/// projection equal to the unmerged model and unmerge restoring it bit for bit, Llama's bias-free o_proj refused for offsets,
/// and the files' round trip.
/// </summary>
public sealed class LoFiTModelTests
{
    public static IEnumerable<object[]> Families => new[] { "llama", "gpt2", "bert", "uselite" }.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(Families))]
    public void AZeroInitIsTheBaseModelAndVectorsChangeIt(string family)
    {
        using var _ = no_grad();
        using var plain = Create(family);
        using var model = Create(family);
        var adapters = model.AddLoFiT(new LoFiTConfig(LoFiTComponents.ScaleAndBias, InitStd: 0));
        Assert.Equal(TransformerBlocks.Find(model).Blocks.Count, adapters.Count);
        var ids = Ids(2, 5);
        Assert.True(TinyLlama.BitwiseEqual(Forward(family, plain, ids), Forward(family, model, ids)), $"{family}: a zero LoFiT changed the output");
        foreach (var adapter in adapters) adapter.Bias!.normal_(0, 0.1);
        Assert.True(MaxAbsDiff(Forward(family, plain, ids), Forward(family, model, ids)) > 1e-4, $"{family}: the offsets changed nothing");
        using (model.DisableAdapters()) Assert.True(TinyLlama.BitwiseEqual(Forward(family, plain, ids), Forward(family, model, ids)), $"{family}: a disabled LoFiT still acts");
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void TheTwoStagesSelectTheLargestScalesAndTrainOffsetsThereOnly(string family)
    {
        using var model = Create(family);
        var stage1 = model.AddLoFiT(new LoFiTConfig(LoFiTComponents.Scale, L1Lambda: 0.01), adapterName: "heads");
        Assert.All(model.named_parameters(), p => Assert.Equal(p.name.Contains(".adapters.heads.lofit_A", StringComparison.Ordinal) || IsHead(p.name), p.parameter.requires_grad));
        // The L1 term is λ·Σ|A| over every adapter's scales.
        double expected = 0.01 * stage1.Sum(a => a.Scale!.abs().sum().item<float>());
        using (var term = model.AdapterLossTerm()) Assert.Equal(expected, term.item<float>(), 5);

        // Make two heads stand out; the selection ranks them first, best first.
        using (no_grad())
        {
            stage1[^1].Scale![1].fill_(0.5);
            stage1[0].Scale![0].fill_(0.3);
        }

        var selection = model.SelectHeads(2, "heads");
        Assert.Equal([new LoFiTHead(stage1.Count - 1, 1), new LoFiTHead(0, 0)], selection.Heads);
        int total = stage1.Sum(a => a.Geometry.Heads);
        Assert.Equal(Math.Max(1, (int)Math.Round(0.1 * total, MidpointRounding.AwayFromZero)), model.SelectHeads(LoFiTConfig.DefaultHeadFraction, "heads").Heads.Count);
        model.DeleteAdapter("heads");

        var stage2 = model.AddLoFiT(new LoFiTConfig(LoFiTComponents.Bias), selection);
        Assert.Equal(2, stage2.Count);
        Assert.All(stage2, a => Assert.Null(a.Scale));
        var trainable = model.TrainableParameters().Where(p => p.numel() > 0).ToList();
        Assert.Equal(stage2.Sum(a => (long)a.Geometry.HeadDim), model.named_parameters().Where(p => p.name.Contains(".lofit_v", StringComparison.Ordinal)).Sum(p => p.parameter.numel()));
        using (var loss = Forward(family, model, Ids(2, 5)).square().mean()) loss.backward();
        Assert.All(stage2, a => Assert.True(a.Bias!.grad!.abs().max().item<float>() > 0, $"{family}: layer {a.Geometry.Layer}'s offsets got no gradient"));
        Assert.Contains(trainable, p => ReferenceEquals(p, stage2[0].Bias));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void MergeEqualsTheUnmergedModelAndUnmergeRestoresIt(string family)
    {
        using var _ = no_grad();
        using var model = Create(family, outputBias: true);
        var before = model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        var adapters = model.AddLoFiT(new LoFiTConfig(LoFiTComponents.ScaleAndBias, InitStd: 0.2), new LoFiTHeadSelection([new(0, 1), new(1, 0), new(1, 2)]));
        var ids = Ids(2, 5);
        var unmerged = Forward(family, model, ids);
        model.MergeLoFiT();
        Assert.All(adapters, a => Assert.True(a.Merged));
        var merged = Forward(family, model, ids);
        Assert.True(MaxAbsDiff(unmerged, merged) < 1e-4, $"{family}: merged differs by {MaxAbsDiff(unmerged, merged)}");
        Assert.True(MaxAbsDiff(unmerged, Forward(family, Create(family, outputBias: true), ids)) > 1e-4, $"{family}: LoFiT changed nothing");
        Assert.Throws<PeftConfigurationException>(() => model.MergeLoFiT());
        model.UnmergeLoFiT();
        foreach (var (name, value) in model.state_dict().Where(p => before.ContainsKey(p.Key)))
        {
            Assert.True(TinyLlama.BitwiseEqual(before[name], value), $"{family}: {name} not restored");
        }

        Assert.True(TinyLlama.BitwiseEqual(unmerged, Forward(family, model, ids)));
    }

    [Fact]
    public void LlamasBiasFreeOutputProjectionTakesScalesButRefusesOffsets()
    {
        using var _ = no_grad();
        using var model = TinyLlama.Create(4);
        model.AddLoFiT(new LoFiTConfig(LoFiTComponents.Bias, InitStd: 0.1), adapterName: "v");
        var weights = model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        var e = Assert.Throws<PeftConfigurationException>(() => model.MergeLoFiT("v"));
        Assert.Contains("no bias", e.Message, StringComparison.Ordinal);
        Assert.Contains("OutputBias", e.Message, StringComparison.Ordinal);
        Assert.All(model.state_dict(), p => Assert.True(TinyLlama.BitwiseEqual(weights[p.Key], p.Value), $"{p.Key} changed by a refused merge"));

        model.DeleteAdapter("v");
        model.AddLoFiT(new LoFiTConfig(LoFiTComponents.Scale, InitStd: 0.1), adapterName: "a");
        var ids = Ids(1, 6);
        var unmerged = model.Forward(ids, null);
        model.MergeLoFiT("a");
        Assert.True(MaxAbsDiff(unmerged, model.Forward(ids, null)) < 1e-4);
    }

    [Theory]
    [InlineData("llama", "model.layers.1.self_attn", "model.layers.1.self_attn.o_proj")]
    [InlineData("gpt2", "transformer.h.1.attn", "transformer.h.1.attn.c_proj")]
    [InlineData("bert", "bert.encoder.layer.1.attention.self", "bert.encoder.layer.1.attention.output.dense")]
    [InlineData("uselite", "layers.1", "layers.1.out_proj")]
    public void FilesAndSelectionsRoundTrip(string family, string attention, string projection)
    {
        string dir = TinyLlama.TempDir("lofit");
        try
        {
            using var model = Create(family);
            var selection = new LoFiTHeadSelection([new(1, 1), new(1, 0)], [0.5, 0.25]);
            selection.Save(Path.Combine(dir, "heads.json"));
            var reread = LoFiTHeadSelection.Load(Path.Combine(dir, "heads.json"));
            Assert.Equal(selection.Heads, reread.Heads);
            Assert.Equal(selection.Scores, reread.Scores);

            model.AddLoFiT(new LoFiTConfig(LoFiTComponents.ScaleAndBias, L1Lambda: 0.002, InitStd: 0.1), reread, "mine");
            string saved = Path.Combine(dir, "adapter");
            model.SaveLoFiT(saved, "mine");
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(saved, AdapterFiles.ConfigFileName)))!.AsObject();
            Assert.Equal("LOFIT", (string?)json["peft_type"]);
            Assert.Equal("scale_and_bias", (string?)json["components"]);
            Assert.Equal(0.002, (double)json["l1_lambda"]!);
            var layer = Assert.Single(json["layers"]!.AsArray())!.AsObject();
            Assert.Equal(attention, (string?)layer["attention"]);
            Assert.Equal(projection, (string?)layer["output_projection"]);
            Assert.Equal([0, 1], layer["heads"]!.AsArray().Select(h => (int)h!));
            using (var reader = SafetensorsFile.Open(Path.Combine(saved, AdapterFiles.WeightsFileName)))
            {
                Assert.Equal([$"{attention}.lofit_A", $"{attention}.lofit_v"], reader.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            }

            using var fresh = Create(family);
            var loaded = fresh.LoadLoFiT(saved);
            Assert.Equal("mine", Assert.Single(loaded).AdapterName);
            using var _ = no_grad();
            var ids = Ids(2, 5);
            Assert.True(TinyLlama.BitwiseEqual(Forward(family, model, ids), Forward(family, fresh, ids)), $"{family}: the reloaded LoFiT differs");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void FilesThatDoNotFitAreRefusedByFieldAndNothingIsInserted()
    {
        string dir = TinyLlama.TempDir("lofit-bad");
        try
        {
            using var model = TinyLlama.Create(4);
            model.AddLoFiT(new LoFiTConfig(LoFiTComponents.Bias));
            model.SaveLoFiT(dir);
            using var gpt2 = TinyGpt2.Create(4, tie: false);
            var family = Assert.Throws<AdapterFormatException>(() => gpt2.LoadLoFiT(dir));
            Assert.Equal("layers", family.Field);
            Assert.Contains("model.layers.0.self_attn", family.Message, StringComparison.Ordinal);
            Assert.Empty(gpt2.InsertedAdapters());

            string configPath = Path.Combine(dir, AdapterFiles.ConfigFileName);
            var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
            json["l1_lambda"] = -1;
            File.WriteAllText(configPath, json.ToJsonString());
            using var llama = TinyLlama.Create(4);
            Assert.Equal("l1_lambda", Assert.Throws<AdapterFormatException>(() => llama.LoadLoFiT(dir)).Field);
            json["l1_lambda"] = 0;
            json["components"] = "everything";
            File.WriteAllText(configPath, json.ToJsonString());
            Assert.Equal("components", Assert.Throws<AdapterFormatException>(() => llama.LoadLoFiT(dir)).Field);
            Assert.Empty(llama.InsertedAdapters());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    public static IEnumerable<object[]> Decoders => new[] { "llama", "gpt2" }.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(Decoders))]
    public void GenerationWithACacheMatchesTheFullForward(string family)
    {
        using var _ = no_grad();
        using var model = Create(family);
        foreach (var adapter in model.AddLoFiT(new LoFiTConfig(LoFiTComponents.ScaleAndBias)))
        {
            adapter.Scale!.normal_(0, 0.5);
            adapter.Bias!.normal_(0, 0.5);
        }

        var ids = Ids(2, 9);
        using var plain = Create(family);
        var full = Forward(family, model, ids);
        Assert.True((full - Forward(family, plain, ids)).abs().max().item<float>() > 1e-3, $"{family}: LoFiT does not reach the logits");
        using var cache = new KvCache(TransformerBlocks.Find(model).Blocks.Count);
        var parts = new List<Tensor> { Cached(family, model, ids[.., ..4], cache) };
        for (int t = 4; t < 9; t++) parts.Add(Cached(family, model, ids[.., t..(t + 1)], cache));
        double diff = (full - cat(parts, 1)).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"{family}: cached generation with LoFiT differs from the full forward by {diff}");
    }

    private static Tensor Cached(string family, nn.Module model, Tensor ids, KvCache cache) => family == "llama"
        ? ((LlamaForCausalLM)model).Forward(ids, cache)
        : ((Gpt2LMHeadModel)model).Forward(ids, cache);

    private static nn.Module Create(string family, bool outputBias = false)
    {
        switch (family)
        {
            case "llama":
                if (!outputBias) return TinyLlama.Create(5);
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

    private static Tensor Ids(long batch, long time) => arange(batch * time, dtype: ScalarType.Int64).mul(7).remainder(50).add(1).view(batch, time);

    private static Tensor Forward(string family, nn.Module model, Tensor ids) => family switch
    {
        "llama" => ((LlamaForCausalLM)model).Forward(ids, null),
        "gpt2" => ((Gpt2LMHeadModel)model).Forward(ids, null),
        "bert" => ((BertForSequenceClassification)model).call(ids),
        _ => ((UseLiteEncoder)model).call(ids, ones(ids.shape[0], ids.shape[1], dtype: ScalarType.Bool)),
    };

    private static bool IsHead(string name) => name.StartsWith("classifier.", StringComparison.Ordinal) || name.StartsWith("score.", StringComparison.Ordinal);

    private static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();
}
