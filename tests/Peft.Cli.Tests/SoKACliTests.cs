
namespace Peft.Cli.Tests;

/// <summary><c>peft merge</c> and <c>peft inspect</c> on SoKA adapters: the file-level merge takes the Kronecker-product SVD of
/// the original base file (as the model did), keeps its residual and adds <c>Σ_k w1_k ⊗ w2_k</c> from the file.</summary>
public sealed class SoKACliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Merge_with_an_explicit_rank_runs_the_models_math() => SvdCliNet.AssertMergeRunsTheModelsMath(_dir, new SoKAOptions(Rank: 4));

    [Fact]
    public void Merge_with_the_automatic_rank_runs_the_models_math() => SvdCliNet.AssertMergeRunsTheModelsMath(_dir, new SoKAOptions(EnergyThreshold: 0.8));

    [Fact]
    public void Inspect_shows_the_format_and_each_layers_rank()
    {
        using var model = SvdCliNet.SaveAdapted(_dir, new SoKAOptions(EnergyThreshold: 0.8));
        var ranks = model.AdaptedLayers().ToDictionary(l => l.Path, l => ((SoKAAdapter)l.Layer.GetAdapter("default")).Rank);
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("SOKA", json["peft_type"]!.GetValue<string>());
        foreach (var (path, rank) in ranks)
        {
            var module = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == path)!;
            Assert.Equal(rank, module["r"]!.GetValue<int>());
            Assert.Equal(-1, module["decompose_factor"]!.GetValue<int>());
        }
    }
}
