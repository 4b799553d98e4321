using Peft.Checkpoints;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>
/// Merged exports record their adapters (safetensors metadata), the model remembers them when its base weights are
/// loaded, and loading one of them again is refused: the update would be applied twice (issue 9 B, item 7).
/// </summary>
public sealed class MergedAdapterMetadataTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>An adapted model with random adapters, its base weights and its adapter saved.</summary>
    private AfModel Trained(string adapterDirectory, int seed = 7)
    {
        torch.manual_seed(seed);
        var model = AfModel.Adapted();
        RandomizeAdapters(model);
        AdapterFiles.Save(model, adapterDirectory);
        return model;
    }

    [Fact]
    public void A_merged_export_records_the_adapter_and_refuses_to_load_it_again()
    {
        string adapter = _dir.File("adapter"), merged = _dir.File("merged.safetensors");
        using var model = Trained(adapter);
        string fingerprint = MergedAdapterMetadata.Fingerprint(model, AdapterNames.Default);
        using (var file = SafetensorsFile.Open(Path.Combine(adapter, AdapterFiles.WeightsFileName)))
        {
            Assert.Equal(fingerprint, MergedAdapterMetadata.Fingerprint(file, PeftMethods.ForConfig(AdapterConfig.Read(Path.Combine(adapter, AdapterFiles.ConfigFileName)))));
        }
        Assert.Matches("^[0-9a-f]{64}$", fingerprint);

        using var input = randn(3, 16);
        using var adapted = Output(model, input);
        model.Merge();
        Assert.Equal(new[] { new MergedAdapterRecord(AdapterNames.Default, "LORA", fingerprint) }, MergedAdapterMetadata.Of(model));
        ModelWeights.Save(model, merged);
        var metadata = Header(merged)["__metadata__"]!;
        Assert.Equal("pt", (string)metadata["format"]!);
        Assert.Equal($$"""{"adapters":[{"name":"default","peft_type":"LORA","sha256":"{{fingerprint}}"}]}""", (string)metadata[MergedAdapterMetadata.MetadataKey]!);

        // A fresh model on the merged weights computes the adapted outputs with its adapter disabled ...
        using var fresh = AfModel.Adapted();
        ModelWeights.Load(fresh, merged);
        Assert.Equal(fingerprint, Assert.Single(MergedAdapterMetadata.Of(fresh)).Sha256);
        using (fresh.DisableAdapters())
        {
            using var y = Output(fresh, input);
            Assert.True((y - adapted).abs().max().item<float>() < 1e-5);
        }

        // ... and loading the same adapter on top is refused, naming the adapter, the weights and the opt-out; nothing changes.
        var before = Snapshot(fresh);
        var ex = Assert.Throws<AdapterAlreadyMergedException>(() => AdapterFiles.Load(fresh, adapter));
        Assert.Contains(adapter, ex.Message, StringComparison.Ordinal);
        Assert.Contains(merged, ex.Message, StringComparison.Ordinal);
        Assert.Contains("twice", ex.Message, StringComparison.Ordinal);
        Assert.Contains("allowAlreadyMerged", ex.Message, StringComparison.Ordinal);
        Assert.Equal(merged, ex.BaseWeightsSource);
        Assert.Equal(adapter, ex.AdapterDirectory);
        Assert.Equal(fingerprint, ex.Record.Sha256);
        AssertUnchanged(before, fresh);
        Assert.IsAssignableFrom<InvalidOperationException>(ex);

        var withTargets = Assert.Throws<AdapterAlreadyMergedException>(() => fresh.LoadAdapterWithTargets(adapter));
        Assert.Equal(merged, withTargets.BaseWeightsSource);
        AssertUnchanged(before, fresh);

        // The opt-out loads it (and the outputs then carry the update twice, as asked).
        AdapterFiles.Load(fresh, adapter, allowAlreadyMerged: true);
        using var twice = Output(fresh, input);
        Assert.True((twice - adapted).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void Another_adapter_loads_and_a_chain_of_merges_records_them_all()
    {
        string first = _dir.File("first"), second = _dir.File("second");
        using var model = Trained(first, seed: 1);
        model.Merge();
        ModelWeights.Save(model, _dir.File("merged-1.safetensors"));
        using var other = Trained(second, seed: 2);

        using var fresh = AfModel.Adapted();
        ModelWeights.Load(fresh, _dir.File("merged-1.safetensors"));
        AdapterFiles.Load(fresh, second);               // a different adapter stacks on the merged base
        fresh.Merge();
        ModelWeights.Save(fresh, _dir.File("merged-2.safetensors"));

        using var reader = SafetensorsFile.Open(_dir.File("merged-2.safetensors"));
        var records = MergedAdapterMetadata.Read(reader);
        Assert.Equal(new[] { MergedAdapterMetadata.Fingerprint(model, AdapterNames.Default), MergedAdapterMetadata.Fingerprint(other, AdapterNames.Default) },
            records.Select(r => r.Sha256));

        using var third = AfModel.Adapted();
        ModelWeights.Load(third, _dir.File("merged-2.safetensors"));
        Assert.Throws<AdapterAlreadyMergedException>(() => AdapterFiles.Load(third, first));
        Assert.Throws<AdapterAlreadyMergedException>(() => AdapterFiles.Load(third, second));
    }

    [Fact]
    public void Unmerged_weights_record_nothing_and_loading_them_forgets_a_merged_base()
    {
        string adapter = _dir.File("adapter");
        using var model = Trained(adapter);
        ModelWeights.Save(model, _dir.File("base.safetensors"));
        Assert.Null(Header(_dir.File("base.safetensors"))["__metadata__"]![MergedAdapterMetadata.MetadataKey]);
        model.Merge();
        ModelWeights.Save(model, _dir.File("merged.safetensors"));

        using var fresh = AfModel.Adapted();
        ModelWeights.Load(fresh, _dir.File("merged.safetensors"));
        ModelWeights.Load(fresh, _dir.File("base.safetensors"));   // the base is replaced by unmerged weights
        Assert.Empty(MergedAdapterMetadata.Of(fresh));
        AdapterFiles.Load(fresh, adapter);
    }

    [Fact]
    public void An_adapter_merged_in_memory_is_refused_under_another_name()
    {
        string adapter = _dir.File("adapter");
        using var model = Trained(adapter);
        model.Merge();
        var ex = Assert.Throws<AdapterAlreadyMergedException>(() => AdapterFiles.Load(model, adapter, "again"));
        Assert.Contains("model.Unmerge(\"default\")", ex.Message, StringComparison.Ordinal);
        Assert.Null(ex.BaseWeightsSource);
        Assert.DoesNotContain("again", model.AdapterNames());

        model.Unmerge();
        AdapterFiles.Load(model, adapter, "again");
    }

    [Theory]
    [InlineData(5_000_000_000L)]
    [InlineData(1_000L)]
    public void Hugging_Face_exports_record_the_adapter_in_every_shard(long maxShardBytes)
    {
        string adapter = _dir.File("adapter"), exported = _dir.File("hf");
        using var model = Trained(adapter);
        string fingerprint = MergedAdapterMetadata.Fingerprint(model, AdapterNames.Default);
        model.Merge();
        HfCheckpoint.Save(model, exported, HfConfig.Parse("""{"model_type": "af"}"""), new CheckpointSaveOptions { MaxShardSizeBytes = maxShardBytes });

        var files = Directory.GetFiles(exported, "*.safetensors");
        Assert.Equal(maxShardBytes < 10_000, files.Length > 1);
        foreach (var file in files)
        {
            using var reader = SafetensorsFile.Open(file);
            Assert.Equal(fingerprint, Assert.Single(MergedAdapterMetadata.Read(reader)).Sha256);
        }

        using (var checkpoint = HfCheckpoint.Open(exported))
        {
            Assert.Equal(fingerprint, Assert.Single(checkpoint.MergedAdapters).Sha256);
        }

        using var fresh = AfModel.Adapted();
        HfCheckpoint.Load(fresh, exported);
        var before = Snapshot(fresh);
        var ex = Assert.Throws<AdapterAlreadyMergedException>(() => AdapterFiles.Load(fresh, adapter));
        Assert.Equal(Path.GetFullPath(exported), ex.BaseWeightsSource);
        AssertUnchanged(before, fresh);
    }

    [Fact]
    public void The_fingerprint_does_not_depend_on_the_stored_dtype()
    {
        string adapter = _dir.File("adapter");
        using var model = Trained(adapter);
        EditWeights(adapter, tensors =>
        {
            foreach (var key in tensors.Keys.ToList()) tensors[key] = tensors[key].to(ScalarType.BFloat16);
        });

        using var fresh = AfModel.Adapted();
        AdapterFiles.Load(fresh, adapter);   // BF16 values, converted exactly to the model's F32
        using var reader = SafetensorsFile.Open(Path.Combine(adapter, AdapterFiles.WeightsFileName));
        var method = PeftMethods.ForConfig(AdapterConfig.Read(Path.Combine(adapter, AdapterFiles.ConfigFileName)));
        Assert.Equal(MergedAdapterMetadata.Fingerprint(reader, method), MergedAdapterMetadata.Fingerprint(fresh, AdapterNames.Default));
        Assert.NotEqual(MergedAdapterMetadata.Fingerprint(model, AdapterNames.Default), MergedAdapterMetadata.Fingerprint(fresh, AdapterNames.Default));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("""{"adapters": 3}""")]
    [InlineData("""{"adapters": [{"name": "default", "peft_type": "LORA", "sha256": "abc"}]}""")]
    [InlineData("""{"adapters": [{"name": "", "peft_type": "LORA", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}]}""")]
    public void A_damaged_record_refuses_the_weights_naming_the_file_and_the_key(string value)
    {
        using var model = AfModel.Adapted();
        string path = _dir.File("weights.safetensors");
        ModelWeights.Save(model, path);
        using (var reader = SafetensorsFile.Open(path))
        {
            var tensors = reader.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, reader.ReadTensor(t.Name))).ToList();
            SafetensorsFile.Write(_dir.File("bad.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt", [MergedAdapterMetadata.MetadataKey] = value });
        }

        var before = Snapshot(model);
        var ex = Assert.Throws<SafetensorsFormatException>(() => ModelWeights.Load(model, _dir.File("bad.safetensors")));
        Assert.Equal(_dir.File("bad.safetensors"), ex.FilePath);
        Assert.Contains(MergedAdapterMetadata.MetadataKey, ex.Message, StringComparison.Ordinal);
        AssertUnchanged(before, model);

        Directory.CreateDirectory(_dir.File("hf"));
        File.Copy(_dir.File("bad.safetensors"), Path.Combine(_dir.File("hf"), HfCheckpoint.WeightsFileName));
        File.WriteAllText(Path.Combine(_dir.File("hf"), HfConfig.FileName), "{}");
        var hf = Assert.Throws<CheckpointFormatException>(() => HfCheckpoint.Open(_dir.File("hf")));
        Assert.Equal(Path.Combine(_dir.File("hf"), HfCheckpoint.WeightsFileName), hf.FilePath);
        Assert.Contains(MergedAdapterMetadata.MetadataKey, hf.Message, StringComparison.Ordinal);
    }
}
