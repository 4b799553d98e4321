using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Runtime.Tests.Serialization;
using Peft.Runtime.Tests.SVFit;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.SoKA;

/// <summary>
/// SoKA files (this library's "SOKA" format: <c>soka_w1</c> <c>[r, m, n]</c>, <c>soka_w2</c> <c>[r, p, q]</c>, config <c>r</c>,
/// <c>rank_pattern</c>, <c>decompose_factor</c>): a load onto the original base derives the residual again and reproduces the
/// trained outputs, the automatic rank is recorded per layer, and the residual base is refused naming the module.
/// </summary>
public sealed class SoKAFileTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static IEnumerable<object[]> Ranks => new[] { new object[] { 2 }, new object[] { 0 } };

    private (string BaseFile, string AdapterDir, SvdFamilyNet Trained) Train(int rank)
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        var trained = new SvdFamilyNet();
        ModelWeights.Save(trained, baseFile);
        trained.ApplyTargets(new PeftTargets(TargetModules.Names("q", "v"), new SoKAOptions(Rank: rank)));
        using (var generator = new Generator(77))
        using (torch.no_grad())
        {
            foreach (var p in trained.TrainableParameters())
            {
                using var noise = torch.randn(p.shape, generator: generator) * 0.3;
                p.add_(noise);
            }
        }

        AdapterFiles.Save(trained, adapterDir);
        return (baseFile, adapterDir, trained);
    }

    [Theory]
    [MemberData(nameof(Ranks))]
    public void AReloadOntoTheOriginalBaseDerivesTheResidualAndGivesTheTrainedOutputs(int rank)
    {
        var (baseFile, adapterDir, trained) = Train(rank);
        using var _t = trained;
        using var x = torch.randn(new long[] { 3, 6 }, generator: new Generator(5));
        using var expected = Output(trained, x);
        using var fresh = new SvdFamilyNet(seed: 99);
        ModelWeights.Load(fresh, baseFile);
        AdapterFiles.Load(fresh, adapterDir);
        using var actual = Output(fresh, x);
        TensorAssert.Close(expected, actual, 1e-5);
        var before = trained.AdapterParameters();
        var after = fresh.AdapterParameters();
        Assert.Equal(before.Count, after.Count);
        for (int i = 0; i < before.Count; i++) AssertBitwiseEqual(before[i], after[i]);
    }

    [Fact]
    public void TheFileHasTheFactorsAndEachLayersRank()
    {
        var (_, adapterDir, trained) = Train(0);
        using var _t = trained;
        var adapters = trained.AdaptedLayers().ToDictionary(l => l.Path, l => (SoKAAdapter)l.Layer.GetAdapter("default"));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("SOKA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(-1, config["decompose_factor"]!.GetValue<int>());
        var pattern = config["rank_pattern"]!.AsObject();
        int common = config["r"]!.GetValue<int>();
        string weights = Path.Combine(adapterDir, AdapterFiles.WeightsFileName);
        Assert.Equal(new[] { "q", "v" }.SelectMany(m => new[] { "soka_w1", "soka_w2" }.Select(n => $"base_model.model.{m}.{n}")).OrderBy(k => k, StringComparer.Ordinal),
            Keys(weights).OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (path, adapter) in adapters)
        {
            Assert.Equal(SoKARules.AutomaticRank(adapter.KroneckerSpectrum, SoKARules.DefaultEnergyThreshold), adapter.Rank);
            Assert.Equal(adapter.Rank, pattern[path]?.GetValue<int>() ?? common);
            Assert.Equal(new long[] { adapter.Rank, adapter.M, adapter.N }, Shape(weights, $"base_model.model.{path}.soka_w1"));
            Assert.Equal(new long[] { adapter.Rank, adapter.P, adapter.Q }, Shape(weights, $"base_model.model.{path}.soka_w2"));
        }
    }

    [Fact]
    public void TheResidualBaseIsRefusedAndLeavesTheModelUnchanged()
    {
        var (_, adapterDir, trained) = Train(2);
        using var _t = trained;
        string residualFile = _dir.File("residual.safetensors");
        ModelWeights.Save(trained, residualFile);
        using var residual = new SvdFamilyNet();
        ModelWeights.Load(residual, residualFile);
        var before = Snapshot(residual);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(residual, adapterDir));
        Assert.Contains("residual", ex.Message);
        Assert.Contains("'q'", ex.Message);
        AssertUnchanged(before, residual);
    }
}
