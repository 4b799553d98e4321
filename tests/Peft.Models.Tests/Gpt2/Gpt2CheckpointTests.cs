using Peft.Checkpoints;
using Peft.Models.Gpt2;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Gpt2;

/// <summary>Hand-built checkpoints in transformers' Conv1D layout, loaded with <see cref="Gpt2LMHeadModel.FromPretrained"/>.</summary>
[Collection(TinyGpt2.Collection)]
public sealed class Gpt2CheckpointTests : IDisposable
{
    private readonly string _root = TinyGpt2.TempDir("ckpt");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string Dir(string name) => Path.Combine(_root, name);

    [Fact]
    public void Conv1DWeightsAreTransposedOnLoad()
    {
        var raw = TinyGpt2.RawConv1DTensors(1);
        TinyGpt2.WriteCheckpoint(Dir("a"), raw);
        using var model = Gpt2LMHeadModel.FromPretrained(Dir("a"));

        // One c_attn layer against x @ W_conv1d + b computed here from the raw tensors.
        var cAttn = (nn.Module<Tensor, Tensor>)model.named_modules().Single(m => m.name == "transformer.h.1.attn.c_attn").module;
        using var _ = no_grad();
        manual_seed(2);
        var x = randn(2, 5, TinyGpt2.Embd);
        var expected = x.matmul(raw["h.1.attn.c_attn.weight"]) + raw["h.1.attn.c_attn.bias"];
        Assert.True(TinyGpt2.MaxAbsDiff(cAttn.call(x), expected) < 1e-5);

        // The whole model against GPT-2's forward written from the formulas on the raw tensors.
        var ids = TinyGpt2.RandomIds(3, 2, 9);
        var reference = TinyGpt2.ReferenceLogits(raw, ids);
        var logits = model.call(ids);
        Assert.True(TinyGpt2.MaxAbsDiff(logits, reference) < 1e-4, $"max diff {TinyGpt2.MaxAbsDiff(logits, reference)}");
    }

    [Fact]
    public void BothKeyFormsAndOldMaskBuffersLoadTheSameWeights()
    {
        var raw = TinyGpt2.RawConv1DTensors(4);
        TinyGpt2.WriteCheckpoint(Dir("prefixed"), raw, prefix: true);
        TinyGpt2.WriteCheckpoint(Dir("bare"), raw, prefix: false, buffers: true);   // GPT2Model keys, as openai-community/gpt2
        TinyGpt2.WriteCheckpoint(Dir("prefixed-buffers"), raw, prefix: true, buffers: true);

        using var a = Gpt2LMHeadModel.FromPretrained(Dir("prefixed"));
        using var b = Gpt2LMHeadModel.FromPretrained(Dir("bare"));
        using var c = Gpt2LMHeadModel.FromPretrained(Dir("prefixed-buffers"));
        using var _ = no_grad();
        var ids = TinyGpt2.RandomIds(5, 1, 7);
        var la = a.call(ids);
        Assert.True(TinyGpt2.BitwiseEqual(la, b.call(ids)));
        Assert.True(TinyGpt2.BitwiseEqual(la, c.call(ids)));

        using var checkpoint = HfCheckpoint.Open(Dir("bare"));
        var report = checkpoint.LoadInto(b, Gpt2LMHeadModel.LoadOptions(b.Config));
        Assert.Equal(new[] { "h.0.attn.bias", "h.0.attn.masked_bias", "h.1.attn.bias", "h.1.attn.masked_bias" }, report.Skipped.OrderBy(s => s, StringComparer.Ordinal));
        Assert.Empty(report.Unexpected);
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float64)]
    [InlineData(ScalarType.Float32)]
    public void EveryFloatDTypeLoadsAsTheRoundedValuesTransposed(ScalarType dtype)
    {
        var raw = TinyGpt2.RawConv1DTensors(6);
        TinyGpt2.WriteCheckpoint(Dir("d"), raw, dtype: dtype);
        using var model = Gpt2LMHeadModel.FromPretrained(Dir("d"));
        var state = model.state_dict();
        foreach (var (name, value) in raw)
        {
            var rounded = value.to_type(dtype).to_type(ScalarType.Float32);
            string modelName = "transformer." + name;
            var expected = Gpt2LMHeadModel.IsConv1DWeight(modelName) ? rounded.t() : rounded;
            Assert.True(TinyGpt2.BitwiseEqual(expected, state[modelName]), $"{dtype}: {modelName}");
        }

        // KeepCheckpointDType gives the model the checkpoint's dtype.
        using var kept = new Gpt2LMHeadModel(TinyGpt2.Config());
        HfCheckpoint.Load(kept, Dir("d"), Gpt2LMHeadModel.LoadOptions(kept.Config) with { KeepCheckpointDType = true });
        Assert.Equal(dtype, kept.state_dict()["transformer.h.0.attn.c_attn.weight"].dtype);
    }

    [Fact]
    public void MissingUnexpectedAndMisShapedTensorsAreNamed()
    {
        var raw = TinyGpt2.RawConv1DTensors(7);
        TinyGpt2.WriteCheckpoint(Dir("missing"), raw, edit: n => n == "h.1.mlp.c_fc.bias" ? null : n);
        var missing = Assert.Throws<CheckpointMismatchException>(() => Gpt2LMHeadModel.FromPretrained(Dir("missing")));
        Assert.Contains("missing: transformer.h.1.mlp.c_fc.bias", missing.Message);

        // A c_attn weight in nn.Linear layout ([out, in]) instead of Conv1D's [in, out].
        var linearLayout = new Dictionary<string, Tensor>(raw, StringComparer.Ordinal) { ["h.0.attn.c_attn.weight"] = raw["h.0.attn.c_attn.weight"].t().contiguous() };
        TinyGpt2.WriteCheckpoint(Dir("shape"), linearLayout);
        var shape = Assert.Throws<CheckpointMismatchException>(() => Gpt2LMHeadModel.FromPretrained(Dir("shape")));
        Assert.Contains("transformer.h.0.attn.c_attn.weight: checkpoint [96, 32] (stored transposed, [in, out]), model [96, 32]", shape.Message);

        var extra = new Dictionary<string, Tensor>(raw, StringComparer.Ordinal) { ["h.0.attn.q_proj.weight"] = zeros(4, 4) };
        TinyGpt2.WriteCheckpoint(Dir("extra"), extra);
        var unexpected = Assert.Throws<CheckpointMismatchException>(() => Gpt2LMHeadModel.FromPretrained(Dir("extra")));
        Assert.Contains("unexpected: transformer.h.0.attn.q_proj.weight", unexpected.Message);

        // A wrong vocabulary: wte is mis-shaped and named.
        var vocab = new Dictionary<string, Tensor>(raw, StringComparer.Ordinal) { ["wte.weight"] = zeros(10, TinyGpt2.Embd) };
        TinyGpt2.WriteCheckpoint(Dir("vocab"), vocab);
        Assert.Contains("transformer.wte.weight: checkpoint [10, 32], model [64, 32]",
            Assert.Throws<CheckpointMismatchException>(() => Gpt2LMHeadModel.FromPretrained(Dir("vocab"))).Message);
    }

    [Fact]
    public void SavePretrainedWritesConv1DLayoutThatLoadsBack()
    {
        using var model = TinyGpt2.Create(8);
        model.SavePretrained(Dir("saved"));
        using (var reader = SafetensorsFile.Open(Path.Combine(Dir("saved"), HfCheckpoint.WeightsFileName)))
        {
            Assert.Equal(new long[] { 32, 96 }, reader.GetInfo("transformer.h.0.attn.c_attn.weight").Shape);
            Assert.Equal(new long[] { 32, 32 }, reader.GetInfo("transformer.h.0.attn.c_proj.weight").Shape);
            Assert.Equal(new long[] { 32, 128 }, reader.GetInfo("transformer.h.1.mlp.c_fc.weight").Shape);
            Assert.Equal(new long[] { 128, 32 }, reader.GetInfo("transformer.h.1.mlp.c_proj.weight").Shape);
            Assert.False(reader.Contains("lm_head.weight"));
            Assert.DoesNotContain(reader.Tensors, t => t.Name.Contains("lora", StringComparison.Ordinal));
            using var stored = reader.ReadTensor("transformer.h.0.attn.c_attn.weight");
            Assert.True(TinyGpt2.BitwiseEqual(stored, model.state_dict()["transformer.h.0.attn.c_attn.weight"].t()));
        }

        var config = HfConfig.Load(Path.Combine(Dir("saved"), "config.json"));
        Assert.Equal("gpt2", config.ModelType);
        Assert.Equal("GPT2LMHeadModel", config.Json["architectures"]![0]!.GetValue<string>());

        using var reloaded = Gpt2LMHeadModel.FromPretrained(Dir("saved"));
        using var _ = no_grad();
        var ids = TinyGpt2.RandomIds(9, 2, 6);
        Assert.True(TinyGpt2.BitwiseEqual(model.call(ids), reloaded.call(ids)));

        // Untied: lm_head is written and read as it is (nn.Linear in transformers too, not transposed).
        using var untied = TinyGpt2.Create(10, tie: false);
        untied.SavePretrained(Dir("untied"));
        using var untiedBack = Gpt2LMHeadModel.FromPretrained(Dir("untied"));
        Assert.True(TinyGpt2.BitwiseEqual(untied.call(ids), untiedBack.call(ids)));
    }
}
