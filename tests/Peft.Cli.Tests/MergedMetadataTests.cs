using Peft.Checkpoints;
using Peft.Serialization;
using Peft.Training;

namespace Peft.Cli.Tests;

/// <summary>
/// <c>peft merge</c> records the merged adapter in its output's metadata (as a model's merged export does), refuses to
/// merge an adapter the base already contains, and the library refuses to load it onto that output.
/// </summary>
public sealed class MergedMetadataTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private MergeNet SaveModel()
    {
        Seeding.SetSeed(3);
        var model = new MergeNet();
        model.RandomizeAdapters(103);
        ModelWeights.Save(model, _dir["base.safetensors"]);
        AdapterFiles.Save(model, _dir["adapters/default"]);
        AdapterFiles.Save(model, _dir["adapters/kron"], "kron");
        return model;
    }

    private static IReadOnlyList<MergedAdapterRecord> Records(string path)
    {
        using var reader = SafetensorsFile.Open(path);
        return MergedAdapterMetadata.Read(reader);
    }

    [Fact]
    public void The_merged_file_records_the_adapter_as_the_models_export_does()
    {
        using var model = SaveModel();
        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapters"], "--adapter-name", "kron", "--output", _dir["merged.safetensors"]);
        Assert.True(result.ExitCode == 0, result.ToString());

        var record = Assert.Single(Records(_dir["merged.safetensors"]));
        Assert.Equal(new MergedAdapterRecord("kron", "LOKR", MergedAdapterMetadata.Fingerprint(model, "kron")), record);
        using (var reader = SafetensorsFile.Open(_dir["merged.safetensors"]))
        {
            Assert.Equal("pt", reader.Metadata["format"]);   // the base's metadata is kept
        }

        var inspect = CliRunner.Run("inspect", _dir["merged.safetensors"]);
        Assert.Contains($"merged adapters (1, already in these weights):\n    kron  LOKR  sha256 {record.Sha256}", inspect.Output);
        var json = System.Text.Json.Nodes.JsonNode.Parse(CliRunner.Run("inspect", _dir["merged.safetensors"], "--json").Output)!;
        Assert.Equal(record.Sha256, (string)json["merged_adapters"]![0]!["sha256"]!);

        // The model's own export of the same merge records the same adapter.
        model.Merge("kron");
        ModelWeights.Save(model, _dir["exported.safetensors"]);
        Assert.Equal(record.Sha256, Assert.Single(Records(_dir["exported.safetensors"])).Sha256);

        // Loading the adapter onto the merged file's weights is refused.
        using var fresh = new MergeNet();
        ModelWeights.Load(fresh, _dir["merged.safetensors"]);
        var ex = Assert.Throws<AdapterAlreadyMergedException>(() => AdapterFiles.Load(fresh, _dir["adapters/kron"], "kron"));
        Assert.Contains(_dir["merged.safetensors"], ex.Message, StringComparison.Ordinal);
        AdapterFiles.Load(fresh, _dir["adapters/default"]);   // another adapter is fine
    }

    [Fact]
    public void Merging_an_adapter_the_base_already_contains_is_refused_unless_allowed()
    {
        using var model = SaveModel();
        Assert.Equal(0, CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["once.safetensors"]).ExitCode);

        var again = CliRunner.Run("merge", "--base", _dir["once.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["twice.safetensors"]);
        Assert.Equal(ExitCodes.Failure, again.ExitCode);
        Assert.Contains(_dir["once.safetensors"], again.Error);
        Assert.Contains(_dir["adapters/default"], again.Error);
        Assert.Contains("--allow-already-merged", again.Error);
        Assert.False(File.Exists(_dir["twice.safetensors"]));

        var forced = CliRunner.Run("merge", "--base", _dir["once.safetensors"], "--adapter", _dir["adapters/default"], "--output", _dir["twice.safetensors"], "--allow-already-merged");
        Assert.True(forced.ExitCode == 0, forced.ToString());
        Assert.Equal(2, Records(_dir["twice.safetensors"]).Count);

        // A different adapter stacks, and the output lists both in merge order.
        var stacked = CliRunner.Run("merge", "--base", _dir["once.safetensors"], "--adapter", _dir["adapters"], "--adapter-name", "kron", "--output", _dir["both.safetensors"]);
        Assert.True(stacked.ExitCode == 0, stacked.ToString());
        Assert.Equal(new[] { "default", "kron" }, Records(_dir["both.safetensors"]).Select(r => r.Name));
    }

    [Fact]
    public void A_merged_model_directory_records_the_adapter_in_every_shard()
    {
        Seeding.SetSeed(3);
        using var model = new MergeNet();
        model.RandomizeAdapters(103);
        HfCheckpoint.Save(model, _dir["base"], HfConfig.Parse("""{"model_type": "mergenet"}"""), new CheckpointSaveOptions { MaxShardSizeBytes = 2_100 });
        AdapterFiles.Save(model, _dir["adapter"]);

        var result = CliRunner.Run("merge", "--base", _dir["base"], "--adapter", _dir["adapter"], "--output", _dir["merged"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        string fingerprint = MergedAdapterMetadata.Fingerprint(model, AdapterNames.Default);
        foreach (var shard in Directory.GetFiles(_dir["merged"], "*.safetensors"))
        {
            Assert.Equal(fingerprint, Assert.Single(Records(shard)).Sha256);
        }

        using var fresh = new MergeNet();
        HfCheckpoint.Load(fresh, _dir["merged"]);
        var ex = Assert.Throws<AdapterAlreadyMergedException>(() => fresh.LoadAdapterWithTargets(_dir["adapter"]));
        Assert.Equal(_dir["merged"], ex.BaseWeightsSource);

        var again = CliRunner.Run("merge", "--base", _dir["merged"], "--adapter", _dir["adapter"], "--output", _dir["merged-2"]);
        Assert.Equal(ExitCodes.Failure, again.ExitCode);
        Assert.Contains(Path.Combine(_dir["merged"], HfCheckpoint.IndexFileName), again.Error);
        Assert.False(Directory.Exists(_dir["merged-2"]));
    }
}
