using Peft.Serialization;
using TorchSharp;
using static Peft.Checkpoints.Tests.Support;
using static TorchSharp.torch;

namespace Peft.Checkpoints.Tests;

/// <summary>Tied embeddings, prefix and rename mapping.</summary>
public sealed class MappingTests : IDisposable
{
    private readonly TempDirectory _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private static void TieHead(nn.Module model)
    {
        var p = Params(model);
        using var _ = no_grad();
        p["lm_head.weight"].copy_(p["model.embed_tokens.weight"]);
    }

    [Fact]
    public void Tied_embeddings_are_saved_once_and_loaded_into_both()
    {
        var dir = _tmp.Sub("tied");
        using var source = TinyLlamaForCausalLM.Create(31);
        TieHead(source);
        HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create(tie: true));
        var names = HeaderNames(Path.Combine(dir, "model.safetensors"));
        Assert.DoesNotContain("lm_head.weight", names);
        Assert.Contains("model.embed_tokens.weight", names);
        Assert.True(ReadJson(Path.Combine(dir, "config.json"))["tie_word_embeddings"]!.GetValue<bool>());

        using var target = TinyLlamaForCausalLM.Create(32);
        var report = HfCheckpoint.Load(target, dir);
        Assert.True(report.IsComplete);
        Assert.Equal("model.embed_tokens.weight", report.Tied["lm_head.weight"]);
        Assert.Contains("lm_head.weight", report.Loaded);
        var p = Params(target);
        Assert.Equal(Bytes(Params(source)["model.embed_tokens.weight"]), Bytes(p["lm_head.weight"]));
        Assert.Equal(Bytes(p["model.embed_tokens.weight"]), Bytes(p["lm_head.weight"]));
        using var a = Logits(source);
        using var b = Logits(target);
        Assert.Equal(Bytes(a), Bytes(b));
    }

    [Fact]
    public void An_untied_config_reports_an_absent_head_as_missing()
    {
        var dir = _tmp.Sub("untied");
        using var source = TinyLlamaForCausalLM.Create(33);
        TieHead(source);
        HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create(tie: true));
        TinyLlamaConfig.Create(tie: false).Save(Path.Combine(dir, "config.json"));

        using var target = TinyLlamaForCausalLM.Create(34);
        var before = Snapshot(target);
        var e = Assert.Throws<CheckpointMismatchException>(() => HfCheckpoint.Load(target, dir));
        Assert.Equal(new[] { "lm_head.weight" }, e.Report.Missing);
        AssertUnchanged(before, target);
        // The option overrides config.json.
        Assert.True(HfCheckpoint.Load(target, dir, new CheckpointLoadOptions { TieWordEmbeddings = true }).IsComplete);
    }

    [Fact]
    public void Saving_a_tied_config_with_different_head_weights_fails_before_writing()
    {
        var dir = _tmp.Sub("tied-differs");
        using var source = TinyLlamaForCausalLM.Create(35);
        var e = Assert.Throws<ArgumentException>(() => HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create(tie: true)));
        Assert.Contains("lm_head.weight differs from model.embed_tokens.weight", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir));
        // With the tie switched off both are written.
        HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create(tie: true), new CheckpointSaveOptions { TieWordEmbeddings = false });
        Assert.Contains("lm_head.weight", HeaderNames(Path.Combine(dir, "model.safetensors")));
    }

    [Fact]
    public void Prefixes_map_a_causal_lm_checkpoint_onto_the_bare_decoder_and_back()
    {
        var full = _tmp.Sub("full");
        using var source = TinyLlamaForCausalLM.Create(36);
        HfCheckpoint.Save(source, full, TinyLlamaConfig.Create());

        // Full checkpoint -> bare decoder: strip "model." and skip the head.
        using var host = TinyLlamaForCausalLM.Create(37);
        var decoder = host.Decoder;
        var report = HfCheckpoint.Load(decoder, full, new CheckpointLoadOptions
        {
            StripPrefix = "model.",
            Rename = n => n == "lm_head.weight" ? null : n,
        });
        Assert.True(report.IsComplete);
        Assert.Equal(new[] { "lm_head.weight" }, report.Skipped);
        Assert.Contains("layers.0.self_attn.q_proj.weight", report.Loaded);
        var expected = Params(source);
        foreach (var (name, p) in decoder.named_parameters()) Assert.Equal(Bytes(expected["model." + name]), Bytes(p));

        // Bare decoder -> checkpoint with decoder names, then into a causal LM with AddPrefix; the head is tied from the embedding.
        var bare = _tmp.Sub("bare");
        HfCheckpoint.Save(decoder, bare, TinyLlamaConfig.Create(tie: true));
        Assert.Contains("layers.1.mlp.down_proj.weight", HeaderNames(Path.Combine(bare, "model.safetensors")));
        using var target = TinyLlamaForCausalLM.Create(38);
        report = HfCheckpoint.Load(target, bare, new CheckpointLoadOptions { AddPrefix = "model." });
        Assert.True(report.IsComplete);
        Assert.Equal("model.embed_tokens.weight", report.Tied["lm_head.weight"]);
        Assert.Equal(Bytes(expected["model.layers.1.mlp.down_proj.weight"]), Bytes(Params(target)["model.layers.1.mlp.down_proj.weight"]));

        // Save-side mapping: write the decoder under the causal-LM names.
        var renamed = _tmp.Sub("renamed");
        HfCheckpoint.Save(decoder, renamed, TinyLlamaConfig.Create(), new CheckpointSaveOptions { AddPrefix = "model." });
        Assert.Contains("model.layers.0.self_attn.k_proj.weight", HeaderNames(Path.Combine(renamed, "model.safetensors")));
    }

    [Fact]
    public void Two_checkpoint_names_mapped_to_one_model_name_are_reported()
    {
        var dir = _tmp.Sub("dup");
        using var source = TinyLlamaForCausalLM.Create(39);
        HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create());
        Rewrite(Path.Combine(dir, "model.safetensors"), t => t
            .Append(new KeyValuePair<string, Tensor>("old.norm.weight", ones(TinyLlamaConfig.Hidden))).ToList());

        using var target = TinyLlamaForCausalLM.Create(40);
        var before = Snapshot(target);
        var e = Assert.Throws<CheckpointMismatchException>(() => HfCheckpoint.Load(target, dir,
            new CheckpointLoadOptions { Rename = n => n == "old.norm.weight" ? "model.norm.weight" : n }));
        Assert.Equal(new[] { "model.norm.weight: from model.norm.weight, old.norm.weight" }, e.Report.Duplicates);
        Assert.Contains("mapped more than once", e.Message, StringComparison.Ordinal);
        AssertUnchanged(before, target);
    }

    [Fact]
    public void Checkpoint_reads_expose_names_infos_and_files()
    {
        var dir = _tmp.Sub("reads");
        using var source = TinyLlamaForCausalLM.Create(41);
        HfCheckpoint.Save(source, dir, TinyLlamaConfig.Create(), new CheckpointSaveOptions { MaxShardSizeBytes = 3000, DType = SafetensorsDType.F16 });
        using var checkpoint = HfCheckpoint.Open(dir);
        Assert.Equal(RoundTripTests.HfLlamaKeys(), checkpoint.TensorNames);
        Assert.True(checkpoint.Contains("model.norm.weight"));
        Assert.False(checkpoint.Contains("model.norm.bias"));
        var info = checkpoint.GetInfo("model.layers.0.mlp.gate_proj.weight");
        Assert.Equal(new long[] { TinyLlamaConfig.Intermediate, TinyLlamaConfig.Hidden }, info.Shape);
        Assert.Equal(SafetensorsDType.F16, info.DType);
        Assert.StartsWith(Path.Combine(checkpoint.Directory, "model-"), checkpoint.GetFile("model.norm.weight"), StringComparison.Ordinal);
        using var t = checkpoint.ReadTensor("model.norm.weight");
        Assert.Equal(ScalarType.Float16, t.dtype);
        Assert.Throws<KeyNotFoundException>(() => checkpoint.ReadTensor("model.norm.bias"));
        checkpoint.Dispose();
        Assert.Throws<ObjectDisposedException>(() => checkpoint.ReadTensor("model.norm.weight"));
    }
}
