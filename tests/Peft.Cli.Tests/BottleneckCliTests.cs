using System.Text.Json.Nodes;
using Peft.Models.UseLite;
using Peft.Serialization;
using TorchSharp;

namespace Peft.Cli.Tests;

/// <summary><c>peft inspect</c> reads the bottleneck family's files (Houlsby, Compacter) with the same checks a load runs;
/// <c>peft merge</c> refuses them, since an inserted adapter with a non-linearity has nothing to merge.</summary>
public sealed class BottleneckCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Inspect_shows_a_compacter_file_with_its_rule_once_and_the_models_trainable_count()
    {
        torch.manual_seed(2);
        using var encoder = new UseLiteEncoder();
        encoder.AddBottleneckAdapters(BottleneckConfig.CompacterPlusPlus(), "task");
        long trainable = encoder.GetTrainableSummary().TrainableParameters;
        encoder.SaveBottleneckAdapters(_dir["compacter"], "task");

        var json = CliRunner.InspectJson(_dir["compacter"]);
        Assert.Equal("BOTTLENECK", json["peft_type"]!.GetValue<string>());
        Assert.Equal("compacter", json["method"]!.GetValue<string>());
        Assert.Equal("task", json["adapter_name"]!.GetValue<string>());
        Assert.Equal(4, json["phm_dim"]!.GetValue<int>());
        Assert.False(json["mh_adapter"]!.GetValue<bool>());
        Assert.False(json["mergeable"]!.GetValue<bool>());
        Assert.Equal(new[] { "shared_parameters.task.phm_rule" }, json["shared_tensors"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(64, json["shared_parameters"]!.GetValue<long>());
        var modules = json["modules"]!.AsArray();
        Assert.Equal(encoder.InsertedAdapters().Count(), modules.Count);
        Assert.All(modules, m => Assert.EndsWith("output_adapters", m!["module"]!.GetValue<string>(), StringComparison.Ordinal));
        Assert.Equal(
            new[] { "adapter_down.0.W_left", "adapter_down.0.W_right", "adapter_down.0.b", "adapter_up.W_left", "adapter_up.W_right", "adapter_up.b" },
            modules[0]!["tensors"]!.AsArray().Select(n => n!.GetValue<string>()));
        // Every tensor of the file trains, the rule once: the model's own count (2 x 1584 + 64 on 512 wide).
        Assert.Equal(trainable, json["trainable_parameters"]!.GetValue<long>());
        Assert.Equal(3232, trainable);

        var text = CliRunner.Run("inspect", _dir["compacter"]);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("peft_type: BOTTLENECK", text.Output, StringComparison.Ordinal);
        Assert.Contains("trainable parameters: 3,232", text.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Inspect_shows_a_houlsby_file_and_names_a_bad_field()
    {
        torch.manual_seed(3);
        using var encoder = new UseLiteEncoder();
        encoder.AddBottleneckAdapters(BottleneckConfig.Houlsby());
        long trainable = encoder.GetTrainableSummary().TrainableParameters;
        encoder.SaveBottleneckAdapters(_dir["houlsby"]);

        var result = CliRunner.Run("inspect", Path.Combine(_dir["houlsby"], BottleneckAdapters.ConfigFileName), "--json");
        Assert.True(result.ExitCode == 0, result.ToString());
        var json = JsonNode.Parse(result.Output)!.AsObject();
        Assert.Equal("bottleneck", json["method"]!.GetValue<string>());
        Assert.Equal(encoder.InsertedAdapters().Count(), json["modules"]!.AsArray().Count);
        Assert.Empty(json["shared_tensors"]!.AsArray());
        Assert.Equal(trainable, json["trainable_parameters"]!.GetValue<long>());

        string config = Path.Combine(_dir["houlsby"], BottleneckAdapters.ConfigFileName);
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"non_linearity\": \"swish\"", "\"non_linearity\": \"softsign\"", StringComparison.Ordinal));
        var bad = CliRunner.Run("inspect", _dir["houlsby"]);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("non_linearity = 'softsign'", bad.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Merge_refuses_a_bottleneck_adapter_saying_why()
    {
        torch.manual_seed(4);
        using var encoder = new UseLiteEncoder();
        ModelWeights.Save(encoder, _dir["base.safetensors"]);
        encoder.AddBottleneckAdapters(BottleneckConfig.Compacter());
        encoder.SaveBottleneckAdapters(_dir["compacter"]);

        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["compacter"], "--output", _dir["merged.safetensors"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("cannot be merged", result.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
    }
}
