
namespace Peft.Cli.Tests;

/// <summary><c>peft merge</c> and <c>peft inspect</c> on KaSA adapters (PEFT's LoraConfig with kasa_config): the file-level
/// merge truncates the original base file's weights to their k − r largest singular directions (as the model did) and adds
/// <c>s·B diag(d) A</c> from the file; the truncated base file is refused naming the module.</summary>
public sealed class KaSACliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Merge_runs_the_models_math() => SvdCliNet.AssertMergeRunsTheModelsMath(_dir, new KaSAOptions(Rank: 4, Alpha: 8));

    [Fact]
    public void Merge_with_rslora_runs_the_models_math() => SvdCliNet.AssertMergeRunsTheModelsMath(_dir, new KaSAOptions(Rank: 3, Alpha: 2, UseRsLora: true));

    [Fact]
    public void Inspect_shows_the_method_rank_and_regulariser_weights()
    {
        using var model = SvdCliNet.SaveAdapted(_dir, new KaSAOptions(Rank: 3, Alpha: 6, Beta: 0.01, Gamma: 0.02));
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("LORA", json["peft_type"]!.GetValue<string>());
        Assert.Equal("KaSA", json["method"]!.GetValue<string>());
        var fc2 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(3, fc2["r"]!.GetValue<int>());
        Assert.Equal(6.0, fc2["alpha"]!.GetValue<double>());
        Assert.Equal(0.01, fc2["kasa_beta"]!.GetValue<double>());
        Assert.Equal(0.02, fc2["kasa_gamma"]!.GetValue<double>());
    }
}
