using System.Text.Json.Nodes;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using Peft.Models.UseLite;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.PrefixTuning;

/// <summary>
/// Prefix tuning (<see cref="PrefixTuningConfig"/>) on the attention insertion points: PEFT's table layout (keys then values
/// per layer, head by head, grouped-query widths), a hand-computed attention over a prefix, the MLP reparameterisation held
/// once, PEFT's files (fields, tensor, refusals), cached generation, training, and what cannot be saved or merged.
/// </summary>
public sealed class PrefixTuningTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-prefix-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void TheTableIsReadAsPeftsPastKeyValues()
    {
        using var model = TinyLlama.Create(1);   // 2 layers, 2 key/value heads of width 8 (grouped-query)
        var prefixes = model.AddPrefixTuning(new PrefixTuningConfig(3));
        using var _ = no_grad();
        var table = model.PrefixTable();
        Assert.Equal(new long[] { 3, 2 * 2 * 16 }, table.shape);
        // PEFT's get_prompt: view(B, n, 2L, heads, head_dim).permute(2, 0, 3, 1, 4).split(2): layer l gets slices 2l (keys), 2l+1 (values).
        var pkv = table.unsqueeze(0).expand(2, -1, -1).reshape(2, 3, 4, 2, 8).permute(2, 0, 3, 1, 4);
        for (int layer = 0; layer < 2; layer++)
        {
            var (k, v) = prefixes[layer].Prefix(2);
            Assert.True(k.eq(pkv[2 * layer]).all().item<bool>(), $"layer {layer} keys");
            Assert.True(v.eq(pkv[(2 * layer) + 1]).all().item<bool>(), $"layer {layer} values");
        }
    }

    [Fact]
    public void AttentionOverAPrefixMatchesTheHandComputedAverage()
    {
        // Zero query/key/value projections make every score 0, so query i averages the values of the 2 prefix positions
        // (all ones) and of the i + 1 tokens it sees (zeros): 2 / (2 + i + 1) = 2/3, 1/2, 2/5. c_proj is the identity.
        using var model = TinyGpt2.Create(2, tie: false);
        var prefixes = model.AddPrefixTuning(new PrefixTuningConfig(2));
        var attention = model.named_modules().Select(m => m.module).OfType<Gpt2Attention>().First();
        using (no_grad())
        {
            foreach (var (name, p) in attention.named_parameters())
            {
                if (name.StartsWith("c_attn", StringComparison.Ordinal)) p.zero_();
                else if (name == "c_proj.weight") p.copy_(eye(TinyGpt2.Embd));
                else if (name == "c_proj.bias") p.zero_();
            }

            prefixes[0].OwnTable!.fill_(1.0f);
            var y = attention.Forward(randn(1, 3, TinyGpt2.Embd), null);
            var expected = tensor(new[] { 2f / 3, 1f / 2, 2f / 5 }).view(1, 3, 1).expand(1, 3, TinyGpt2.Embd);
            Assert.True((y - expected).abs().max().item<float>() < 1e-6, $"got {string.Join(", ", y[0, .., 0].data<float>().ToArray())}");
        }
    }

    [Fact]
    public void TheProjectionIsOneSharedMlpThatEveryLayerTrains()
    {
        using var model = TinyLlama.Create(3);
        var prefixes = model.AddPrefixTuning(new PrefixTuningConfig(4, Projection: true, EncoderHiddenSize: 6));
        Assert.NotNull(prefixes[0].Encoder);
        Assert.Null(prefixes[1].Encoder);
        long tokenDim = 16, table = 2 * 2 * 16;
        long expected = (4 * tokenDim) + (tokenDim * 6) + 6 + (6 * table) + table;
        Assert.Equal(expected, model.TrainableParameters().Sum(p => p.numel()));
        Assert.Equal(expected, model.InsertedAdapters().Sum(a => a.Adapter.parameters().Sum(p => p.numel())));   // registered once
        Assert.Single(model.state_dict().Keys, k => k.EndsWith("encoder.transform.2.weight", StringComparison.Ordinal));

        var loss = model.call(Ids(2, 5)).square().mean();
        loss.backward();
        var last = prefixes[0].Encoder!.named_parameters().First(p => p.name == "transform.2.weight").parameter;
        // Rows 32..63 of the last layer feed layer 1's keys and values: layer 1 trains the shared MLP too.
        Assert.True(last.grad!.narrow(0, 32, 32).abs().sum().item<float>() > 0, "layer 1 sent no gradient to its columns");
        Assert.True(model.PrefixTable().shape.SequenceEqual(new long[] { 4, table }));
    }

    [Fact]
    public void PeftFilesRoundTripWithPeftsFieldsAndAProjectedPrefixLoadsAsItsTable()
    {
        using var model = TinyLlama.Create(4);
        model.AddPrefixTuning(new PrefixTuningConfig(3, Projection: true, EncoderHiddenSize: 5));
        model.SavePrefixTuning(_dir, baseModelNameOrPath: "tiny-llama", taskType: "CAUSAL_LM");
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("PREFIX_TUNING", (string?)json["peft_type"]);
        Assert.Equal(3, (int)json["num_virtual_tokens"]!);
        Assert.Equal(16, (int)json["token_dim"]!);           // kv_heads · head_dim, as PEFT sets it for grouped-query attention
        Assert.Equal(2, (int)json["num_attention_heads"]!);   // the key/value heads
        Assert.Equal(2, (int)json["num_layers"]!);
        Assert.Equal(5, (int)json["encoder_hidden_size"]!);
        Assert.True((bool)json["prefix_projection"]!);
        Assert.Equal(1, (int)json["num_transformer_submodules"]!);
        Assert.Equal("CAUSAL_LM", (string?)json["task_type"]);
        using (var reader = SafetensorsFile.Open(Path.Combine(_dir, AdapterFiles.WeightsFileName)))
        {
            Assert.Equal(["prompt_embeddings"], reader.Tensors.Select(t => t.Name));
            Assert.Equal(new long[] { 3, 64 }, reader.Tensors[0].Shape);
        }

        using var loaded = TinyLlama.Create(4);
        loaded.LoadPrefixTuning(_dir);
        using var _ = no_grad();
        var ids = Ids(2, 6);
        Assert.True((model.call(ids) - loaded.call(ids)).abs().max().item<float>() < 1e-5);
        Assert.Equal(3 * 64, loaded.TrainableParameters().Sum(p => p.numel()));
        Assert.True(PrefixTuningFile.IsPrefixTuning(_dir));
    }

    [Fact]
    public void MismatchedOrCorruptFilesAreRefusedNamingTheField()
    {
        using var model = TinyLlama.Create(5);
        model.AddPrefixTuning(new PrefixTuningConfig(3));
        model.SavePrefixTuning(_dir);
        string config = Path.Combine(_dir, AdapterFiles.ConfigFileName);
        string original = File.ReadAllText(config);

        using var gpt2 = TinyGpt2.Create(5, tie: false);   // 4 heads of width 8: token_dim 32, not 16
        var e = Assert.Throws<AdapterFormatException>(() => gpt2.LoadPrefixTuning(_dir));
        Assert.Contains("token_dim", e.Message, StringComparison.Ordinal);
        Assert.Empty(gpt2.InsertedAdapters());

        File.WriteAllText(config, original.Replace("\"num_layers\": 2", "\"num_layers\": 3", StringComparison.Ordinal));
        using var fresh = TinyLlama.Create(5);
        e = Assert.Throws<AdapterFormatException>(() => fresh.LoadPrefixTuning(_dir));
        Assert.Contains("prompt_embeddings", e.Message, StringComparison.Ordinal);   // the table no longer fits 3 layers

        File.WriteAllText(config, original.Replace("\"num_virtual_tokens\": 3", "\"num_virtual_tokens\": -1", StringComparison.Ordinal));
        e = Assert.Throws<AdapterFormatException>(() => fresh.LoadPrefixTuning(_dir));
        Assert.Contains("num_virtual_tokens", e.Message, StringComparison.Ordinal);
        Assert.Empty(fresh.InsertedAdapters());
    }

    [Fact]
    public void GenerationWithACacheMatchesTheFullForward()
    {
        using var model = TinyLlama.Create(6);
        model.AddPrefixTuning(new PrefixTuningConfig(4, Projection: true));
        using var _ = no_grad();
        var ids = Ids(1, 7);
        var full = model.call(ids);
        using var cache = new KvCache(2);
        var parts = new List<Tensor> { model.Forward(ids[.., ..3], cache) };
        for (int t = 3; t < 7; t++) parts.Add(model.Forward(ids[.., t..(t + 1)], cache));
        Assert.True((full - cat(parts, 1)).abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public void TrainingThePrefixLowersTheLossAndLeavesTheBaseUntouched()
    {
        using var model = TinyGpt2.Create(7, tie: false);
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        model.AddPrefixTuning(new PrefixTuningConfig(4, ZeroInit: true));
        var ids = Ids(4, 8);
        var targets = ids.roll(-1, 1);
        using var optimizer = optim.Adam(model.TrainableParameters(), lr: 0.05);
        double first = 0, last = 0;
        for (int step = 0; step < 25; step++)
        {
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(model.call(ids).view(-1, TinyGpt2.Vocab), targets.view(-1));
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
            loss.backward();
            optimizer.step();
        }

        Assert.True(last < first - 0.1, $"loss went from {first} to {last}");
        foreach (var (name, p) in model.named_parameters().Where(p => !p.name.Contains(".insertions.", StringComparison.Ordinal)))
        {
            Assert.True(p.eq(before[name]).all().item<bool>(), $"{name} changed");
        }
    }

    [Fact]
    public void WhatCannotBeDoneIsRefusedWithTheReason()
    {
        using var model = TinyLlama.Create(8);
#pragma warning disable PEFT0049 // the run-time refusals behind the analyzer's rule (PromptConfigDiagnosticsTests)
        Assert.Throws<PeftConfigurationException>(() => model.AddPrefixTuning(new PrefixTuningConfig(0)));
        Assert.Throws<PeftConfigurationException>(() => model.AddPrefixTuning(new PrefixTuningConfig(2, EncoderHiddenSize: 8)));
#pragma warning restore PEFT0049
        model.AddPrefixTuning(new PrefixTuningConfig(2));
        Assert.Throws<PeftConfigurationException>(() => model.AddPrefixTuning(new PrefixTuningConfig(2)));   // name taken
        var merge = Assert.Throws<PeftConfigurationException>(() => model.Merge());
        Assert.Contains("default", merge.Message, StringComparison.Ordinal);

        manual_seed(8);
        using var encoder = new UseLiteEncoder();   // layer 0 is 256 wide, the others 512: no single token_dim
        encoder.AddPrefixTuning(new PrefixTuningConfig(2));
        var save = Assert.Throws<PeftConfigurationException>(() => encoder.SavePrefixTuning(_dir));
        Assert.Contains("ModelWeights.Save", save.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AMamAdapterIsAPrefixAndParallelAdaptersThatSwitchAsOne()
    {
        using var plain = TinyGpt2.Create(9, tie: false);
        using var model = TinyGpt2.Create(9, tie: false);
        model.AddMamAdapter("mam", new PrefixTuningConfig(3, Projection: true, EncoderHiddenSize: 8));
        var inserted = model.InsertedAdapters().Select(a => a.Adapter).ToList();
        Assert.Equal(2, inserted.OfType<PrefixAdapter>().Count());
        Assert.Equal(2, inserted.OfType<BottleneckAdapter>().Count());
        Assert.All(inserted.OfType<BottleneckAdapter>(), b => Assert.Equal(BottleneckConfig.ScaledParallel(), b.Config));
        Assert.Equal(PrefixTuningConfig.Mam(), new PrefixTuningConfig(30, Projection: true, EncoderHiddenSize: 800));
        Assert.Equal(inserted.Sum(a => a.parameters().Sum(p => p.numel())), model.TrainableParameters().Sum(p => p.numel()));
        Assert.Throws<PeftConfigurationException>(() => model.AddMamAdapter("mam"));
        using var _ = no_grad();
        var ids = Ids(2, 5);
        var y0 = plain.call(ids);
        using (model.DisableAdapters()) Assert.True((model.call(ids) - y0).abs().max().item<float>() == 0);
        Assert.True((model.call(ids) - y0).abs().max().item<float>() > 1e-4);
        model.DeleteAdapter("mam");
        Assert.Empty(model.InsertedAdapters());
        Assert.True((model.call(ids) - y0).abs().max().item<float>() == 0);
    }

    private static Tensor Ids(long batch, long time) => arange(batch * time, dtype: ScalarType.Int64).mul(11).remainder(60).add(2).view(batch, time);
}
