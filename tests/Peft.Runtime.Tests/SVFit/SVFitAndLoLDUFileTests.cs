using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.SVFit;

/// <summary>Two linear layers, targetable (configuration targeting adds SVFit or LoLDU; a creating load adapts them).</summary>
[Adaptable]
public sealed partial class SvdFamilyNet : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> q;
    private Module<Tensor, Tensor> v;

    public SvdFamilyNet(int seed = 21) : base(nameof(SvdFamilyNet))
    {
        torch.manual_seed(seed);
        q = Linear(6, 5);
        v = Linear(5, 4);
        InitializePeft();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = q.call(x);
        using var t = functional.tanh(h);
        return v.call(t);
    }
}

/// <summary>
/// SVFit and LoLDU files (this library's "SVFIT" and "LOLDU" formats): the frozen factors are saved, a load that creates the
/// adapter on the original base derives the residual again and reproduces the trained outputs, the rank chosen by energy is
/// recorded per layer, and the seam's base fingerprints refuse the residual base, a foreign base, and a model whose adapter was
/// initialised from another base, naming the module.
/// </summary>
public sealed class SVFitAndLoLDUFileTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static IEnumerable<object[]> Methods => new[]
    {
        new object[] { "svfit-r2" },
        new object[] { "svfit-energy" },
        new object[] { "loldu-r2" },
    };

    private static PeftAdapterOptions Options(string name) => name switch
    {
        "svfit-r2" => new SVFitOptions(Rank: 2),
        "svfit-energy" => new SVFitOptions(EnergyThreshold: 0.8),
        _ => new LoLDUOptions(Rank: 2, Alpha: 4),
    };

    private static Tensor Input() => torch.randn(new long[] { 3, 6 }, generator: new Generator(5));

    /// <summary>The original base (saved), the adapted model (adapter added by targeting), its trainable values moved off their
    /// initialisation and saved.</summary>
    private (string BaseFile, string AdapterDir, SvdFamilyNet Trained) Train(string name)
    {
        string baseFile = _dir.File("base.safetensors"), adapterDir = _dir.File("adapter");
        var trained = new SvdFamilyNet();
        ModelWeights.Save(trained, baseFile);
        trained.ApplyTargets(new PeftTargets(TargetModules.Names("q", "v"), Options(name)));
        using (var generator = new Generator(77))
        using (no_grad())
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
    [MemberData(nameof(Methods))]
    public void AReloadOntoTheOriginalBaseDerivesTheResidualAndGivesTheTrainedOutputs(string name)
    {
        var (baseFile, adapterDir, trained) = Train(name);
        using var _t = trained;
        using var x = Input();
        using var expected = Output(trained, x);

        using var fresh = new SvdFamilyNet(seed: 99);
        ModelWeights.Load(fresh, baseFile);
        AdapterFiles.Load(fresh, adapterDir);
        using var actual = Output(fresh, x);
        TensorAssert.Close(expected, actual, 1e-5);
        var layer = fresh.AdaptedLayers().First().Layer;
        Assert.True(layer.HoldsResidualBase);
        var before = trained.AdapterParameters();
        var after = fresh.AdapterParameters();
        Assert.Equal(before.Count, after.Count);
        for (int i = 0; i < before.Count; i++) AssertBitwiseEqual(before[i], after[i]);
        Assert.Equal(trained.TrainableParameters().Sum(p => p.numel()), fresh.TrainableParameters().Sum(p => p.numel()));
    }

    [Fact]
    public void TheRankChosenByEnergyIsRecordedPerLayer()
    {
        var (_, adapterDir, trained) = Train("svfit-energy");
        using var _t = trained;
        var ranks = trained.AdaptedLayers().ToDictionary(l => l.Path, l => ((SVFitAdapter)l.Layer.GetAdapter("default")).Rank);
        Assert.All(ranks.Values, r => Assert.InRange(r, 1, 4));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("SVFIT", config["peft_type"]!.GetValue<string>());
        var pattern = config["rank_pattern"]!.AsObject();
        int common = config["r"]!.GetValue<int>();
        foreach (var (path, rank) in ranks)
        {
            Assert.Equal(rank, pattern[path]?.GetValue<int>() ?? common);
        }

        var header = Header(Path.Combine(adapterDir, AdapterFiles.WeightsFileName));
        var shape = header["base_model.model.q.svfit_Vh"]!["shape"]!.AsArray().Select(n => n!.GetValue<long>());
        Assert.Equal(new long[] { ranks["q"], 6 }, shape);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void TheResidualBaseAndAForeignBaseAreRefusedAndLeaveTheModelUnchanged(string name)
    {
        var (_, adapterDir, trained) = Train(name);
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

        using var other = new SvdFamilyNet(seed: 3);
        var foreign = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(other, adapterDir));
        Assert.Contains("not the one this adapter was initialised from", foreign.Message);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void ALoadIntoAnAdapterInitialisedFromAnotherBaseIsRefused(string name)
    {
        var (_, adapterDir, trained) = Train(name);
        using var _t = trained;
        using var other = new SvdFamilyNet(seed: 3);
        other.ApplyTargets(new PeftTargets(TargetModules.Names("q", "v"), Options(name)));
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(other, adapterDir));
        Assert.Contains("ReinitializeFromBase", ex.Message);
    }
}
