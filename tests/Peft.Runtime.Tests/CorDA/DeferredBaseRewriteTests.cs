using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.CorDA;

/// <summary>
/// The seam for base-rewriting initialisations that need calibration data (<see cref="PeftAdapterOptions.NeedsCalibration"/>,
/// <see cref="AdaptedLayer.InitializeAdapterFromBase"/>), through CorDA: a waiting adapter rewrites nothing and records no
/// residual; initialising it later records the original and the residual as adding a PiSSA adapter does; it is refused while
/// anything is merged and for an unknown adapter; and <c>ReinitializeFromBase</c> on the original weights puts it back to waiting,
/// after which the same calibration gives the same adapter.
/// </summary>
public class DeferredBaseRewriteTests
{
    private static CorDAEigens Eigens(Tensor w, Tensor x, int rank)
    {
        using var cov = CorDAInitialization.CallCovariance(x, useFloat16: false, "q_proj");
        return CorDAInitialization.Eigens(w, cov, rank, CorDAMethod.Ipm, "q_proj");
    }

    [Fact]
    public void AWaitingAdapterRecordsNothingAndItsLaterInitialisationRecordsBothFingerprints()
    {
        using var w = torch.randn(new long[] { 4, 5 }, generator: new Generator(3));
        using var model = new CordaHolder(w, new LoRAOptions(Rank: 2, Init: LoRAInit.CorDA));
        Assert.True(new LoRAOptions(Init: LoRAInit.CorDA).NeedsCalibration);
        Assert.False(new LoRAOptions(Init: LoRAInit.PiSSA).NeedsCalibration);
        Assert.Null(model.Layer.ResidualFingerprints);
        Assert.False(model.Layer.HoldsResidualBase);

        using var x = torch.randn(new long[] { 6, 5 }, generator: new Generator(4));
        model.Adapter.SetCorDAEigens(Eigens(w, x, 2));
        model.Layer.InitializeAdapterFromBase("default");
        var (original, residual) = model.Layer.ResidualFingerprints!.Value;
        Assert.True(original.Matches(w));
        Assert.True(residual.Matches(model.Layer.Weight));
        Assert.False(residual.Matches(w));

        Assert.Throws<KeyNotFoundException>(() => model.Layer.InitializeAdapterFromBase("missing"));
    }

    [Fact]
    public void TheLaterInitialisationIsRefusedWhileMerged()
    {
        using var w = torch.randn(new long[] { 4, 5 }, generator: new Generator(5));
        using var model = new CordaHolder(w, new LoRAOptions(Rank: 2, Init: LoRAInit.CorDA));
        model.Layer.WithAdapter("plain", new LoRAOptions(Rank: 1));
        model.Layer.Merge();
        using var x = torch.randn(new long[] { 6, 5 }, generator: new Generator(6));
        model.Adapter.SetCorDAEigens(Eigens(w, x, 2));
        var ex = Assert.Throws<PeftConfigurationException>(() => model.Layer.InitializeAdapterFromBase("default"));
        Assert.Contains("q_proj", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Unmerge", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReinitializingOnTheOriginalWeightsPutsTheAdapterBackToWaiting()
    {
        using var w = torch.randn(new long[] { 4, 5 }, generator: new Generator(7));
        using var model = new CordaHolder(w, new LoRAOptions(Rank: 2, Alpha: 4, Init: LoRAInit.CorDA));
        using var x = torch.randn(new long[] { 6, 5 }, generator: new Generator(8));
        model.PreprocessCorDA(CorDATests.Feed(model, x));
        using var a = model.Adapter.A.detach().clone();
        using var residual = model.Layer.Weight.detach().clone();

        // With the residual still in the base, re-initialising is refused (it would take the part out twice).
        Assert.Throws<PeftConfigurationException>(() => model.ReinitializeFromBase());

        // The original weights back (a base checkpoint): the adapter waits again, then the same calibration gives the same start.
        using (torch.no_grad()) model.Layer.Weight.copy_(w);
        model.ReinitializeFromBase();
        Assert.True(model.Adapter.AwaitsCalibration);
        Assert.Null(model.Layer.ResidualFingerprints);
        Assert.Throws<PeftConfigurationException>(() => model.call(x));
        model.PreprocessCorDA(CorDATests.Feed(model, x));
        TensorAssert.Close(a, model.Adapter.A, 0);
        TensorAssert.Close(residual, model.Layer.Weight, 0);
    }
}
