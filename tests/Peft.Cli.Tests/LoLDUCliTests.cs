
namespace Peft.Cli.Tests;

/// <summary><c>peft merge</c> and <c>peft inspect</c> on LoLDU adapters: the file-level merge takes the LU of the original base
/// file (as the model did), keeps its residual and adds <c>s·(P L_r) diag(z) U_r</c> from the file.</summary>
public sealed class LoLDUCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Merge_runs_the_models_math() => SvdCliNet.AssertMergeRunsTheModelsMath(_dir, new LoLDUOptions(Rank: 4, Alpha: 2));

    [Fact]
    public void Inspect_shows_the_format_rank_and_alpha()
    {
        using var model = SvdCliNet.SaveAdapted(_dir, new LoLDUOptions(Rank: 3, Alpha: 6));
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("LOLDU", json["peft_type"]!.GetValue<string>());
        var fc2 = json["modules"]!.AsArray().Single(m => m!["module"]!.GetValue<string>() == "fc2")!;
        Assert.Equal(3, fc2["r"]!.GetValue<int>());
        Assert.Equal(6.0, fc2["alpha"]!.GetValue<double>());
    }
}
