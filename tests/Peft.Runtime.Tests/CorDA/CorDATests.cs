using Peft.Runtime.Tests.Core;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.CorDA;

/// <summary>A module holding one wrapped linear layer, as a model holds its adapted layers.</summary>
internal sealed class CordaHolder : nn.Module<Tensor, Tensor>
{
    private readonly AdaptedLinear q_proj;

    public CordaHolder(Tensor weight, LoRAOptions? options)
        : base(nameof(CordaHolder))
    {
        var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: false, dtype: weight.dtype);
        using (torch.no_grad()) linear.weight!.copy_(weight);
        q_proj = AdaptedLinear.Wrap(linear, "q_proj");
        q_proj.Weight.requires_grad = false;
        if (options is not null) q_proj.WithAdapter("default", options);
        register_module("q_proj", q_proj);
    }

    public AdaptedLinear Layer => q_proj;

    public LoRAAdapter Adapter => (LoRAAdapter)q_proj.GetAdapter("default");

    public override Tensor forward(Tensor x) => q_proj.forward(x);
}

/// <summary>
/// CorDA (catalogue 2.3; PEFT's corda.py and corda_init) by hand: the covariance (each call's input over |max X|, XᵀX summed and
/// divided by the number of calls), PEFT's damping, IPM and KPM on a diagonal example where they take different components and
/// where IPM differs from PiSSA's choice, W_res + s·BA = W, forward, gradients, merge and unmerge, and the refusals.
/// </summary>
public class CorDATests
{
    private readonly ITestOutputHelper _output;

    public CorDATests(ITestOutputHelper output) => _output = output;

    internal static Action<LayerInputCapture> Feed(CordaHolder model, params Tensor[] calls) => _ =>
    {
        foreach (var x in calls)
        {
            using var y = model.call(x);
        }
    };

    [Fact]
    public void TheCovarianceScalesEachCallByItsMaxAndAveragesOverCalls()
    {
        // Call 1: X = [[2, 0], [0, 1]], max 2 ⇒ [[1, 0], [0, 0.5]] ⇒ XᵀX = diag(1, 0.25).
        // Call 2: X = [[−4, −2]], max −2, |max| 2 ⇒ [[−2, −1]] ⇒ XᵀX = [[4, 2], [2, 1]].
        // C = (diag(1, 0.25) + [[4, 2], [2, 1]]) / 2 calls = [[2.5, 1], [1, 0.625]] (not / 3 rows).
        using var w = torch.tensor(new float[,] { { 1, 0 }, { 0, 2 } });
        using var model = new CordaHolder(w, new LoRAOptions(Rank: 1, Init: LoRAInit.CorDA));
        using var x1 = torch.tensor(new float[,] { { 2, 0 }, { 0, 1 } });
        using var x2 = torch.tensor(new float[,] { { -4, -2 } });
        var dir = Path.Combine(Path.GetTempPath(), "peft-corda-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            string file = Path.Combine(dir, "cov.safetensors");
            var calls = model.PreprocessCorDA(Feed(model, x1, x2), new CorDASettings(CovarianceFile: file));
            Assert.Equal(2, calls["q_proj"]);
            var covariances = CorDAFiles.ReadCovariances(file, new[] { ("q_proj", 2L) });
            using var expected = torch.tensor(new float[,] { { 2.5f, 1 }, { 1, 0.625f } });
            TensorAssert.Close(expected, covariances["q_proj"], 1e-6);
            foreach (var c in covariances.Values) c.Dispose();
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void DampingStartsAtOnePercentOfTheMeanDiagonalAndDoublesUntilInvertible()
    {
        // diag(1, 0.04): mean diagonal 0.52, λ = 0.01 ⇒ C̃ = diag(1.0052, 0.0452), invertible at once.
        using var c = torch.tensor(new float[,] { { 1, 0 }, { 0, 0.04f } });
        var (damped, inverse, damp) = CorDAInitialization.DampedInverse(c, "q");
        Assert.Equal(0.01, damp);
        using var expected = torch.tensor(new float[,] { { 1.0052f, 0 }, { 0, 0.0452f } });
        TensorAssert.Close(expected, damped, 1e-7);
        damped.Dispose();
        inverse.Dispose();

        // A zero covariance (no input reached the layer) is refused by name; PEFT would loop.
        using var zero = torch.zeros(2, 2);
        var ex = Assert.Throws<InvalidOperationException>(() => CorDAInitialization.DampedInverse(zero, "layers.0.q"));
        Assert.Contains("layers.0.q", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(CorDAMethod.Ipm)]
    [InlineData(CorDAMethod.Kpm)]
    public void IpmAndKpmTakeDifferentComponentsByHand(CorDAMethod method)
    {
        // W = diag(1, 2); one call X = [[1, 0], [0, 0.2]] ⇒ C = diag(1, 0.04), C̃ = diag(1.0052, 0.0452) (above);
        // W C̃ = diag(1.0052, 0.0904): the calibration uses input 1 most, so the largest component is e₁ although W's largest
        // singular value (PiSSA's pick) is on e₂. V = (Vᴴ C̃⁻¹)ᵀ = diag(1/1.0052, 1/0.0452). r = 1, α = 2 (s = 2):
        // IPM: S/s = 0.5026, A = [√0.5026 / 1.0052, 0], B = [√0.5026, 0]ᵀ, s·BA = diag(1, 0), W_res = diag(0, 2).
        // KPM: S/s = 0.0452, A = [0, √0.0452 / 0.0452], B = [0, √0.0452]ᵀ, s·BA = diag(0, 2), W_res = diag(1, 0).
        using var w = torch.tensor(new float[,] { { 1, 0 }, { 0, 2 } });
        using var model = new CordaHolder(w, new LoRAOptions(Rank: 1, Alpha: 2, Init: LoRAInit.CorDA, CorDAMethod: method));
        Assert.True(model.Adapter.AwaitsCalibration);
        Assert.False(model.Adapter.RewritesBase);
        using var x = torch.tensor(new float[,] { { 1, 0 }, { 0, 0.2f } });
        model.PreprocessCorDA(Feed(model, x));
        Assert.False(model.Adapter.AwaitsCalibration);
        Assert.True(model.Adapter.RewritesBase);

        bool ipm = method == CorDAMethod.Ipm;
        double half = ipm ? 0.5026 : 0.0452, v = ipm ? 1.0052 : 0.0452;
        float sign = Math.Sign(model.Adapter.B[ipm ? 0 : 1, 0].item<float>());
        var a = new float[1, 2];
        var b = new float[2, 1];
        a[0, ipm ? 0 : 1] = sign * (float)(Math.Sqrt(half) / v);
        b[ipm ? 0 : 1, 0] = sign * (float)Math.Sqrt(half);
        using var expectedA = torch.tensor(a);
        using var expectedB = torch.tensor(b);
        TensorAssert.Close(expectedA, model.Adapter.A, 1e-5);
        TensorAssert.Close(expectedB, model.Adapter.B, 1e-5);
        using var residual = ipm ? torch.tensor(new float[,] { { 0, 0 }, { 0, 2 } }) : torch.tensor(new float[,] { { 1, 0 }, { 0, 0 } });
        TensorAssert.Close(residual, model.Layer.Weight, 1e-5);
        using var delta = model.Adapter.DeltaWeight();
        using var sum = model.Layer.Weight + delta;
        TensorAssert.Close(w, sum, 1e-5);
        _output.WriteLine($"{method}: A = [{string.Join(", ", model.Adapter.A.data<float>().ToArray())}], B = [{string.Join(", ", model.Adapter.B.data<float>().ToArray())}]");
    }

    [Fact]
    public void ForwardGradientsMergeAndUnmergeOnTheResidual()
    {
        using var w = torch.randn(new long[] { 6, 8 }, generator: new Generator(21)) * 0.3;
        using var model = new CordaHolder(w, new LoRAOptions(Rank: 3, Alpha: 6, Init: LoRAInit.CorDA));
        var calibration = Enumerable.Range(0, 4).Select(i => torch.randn(new long[] { 5, 8 }, generator: new Generator((ulong)(30 + i)))).ToArray();
        model.PreprocessCorDA(Feed(model, calibration));
        foreach (var t in calibration) t.Dispose();
        var lora = model.Adapter;
        using var residual = model.Layer.Weight.clone();

        // At init the layer computes the original W: W_res + s·BA = W.
        using var delta = lora.DeltaWeight();
        using var rebuilt = residual + delta;
        TensorAssert.Close(w, rebuilt, 1e-5);
        using var x = torch.randn(new long[] { 4, 8 }, generator: new Generator(9));
        using var y = model.call(x);
        using var original = x.matmul(w.t());
        TensorAssert.Close(original, y, 1e-5);

        // Gradients of L = Σ g ⊙ y: dB = s·gᵀ(x Aᵀ), dA = s·Bᵀ gᵀ x (s = 2); the base gets none.
        using var g = torch.randn(new long[] { 4, 6 }, generator: new Generator(10));
        using (var loss = (model.call(x) * g).sum()) loss.backward();
        using var ax = x.matmul(lora.A.t());
        using var dB = g.t().matmul(ax) * 2.0;
        using var dA = lora.B.t().matmul(g.t()).matmul(x) * 2.0;
        TensorAssert.Close(dB, lora.B.grad!, 1e-5);
        TensorAssert.Close(dA, lora.A.grad!, 1e-5);
        Assert.Null(model.Layer.Weight.grad);

        // Move the factors off their init, then merge = unmerged and unmerge restores the residual.
        using (torch.no_grad()) lora.B.add_(0.1);
        using var unmerged = model.call(x);
        model.Layer.Merge();
        using var merged = model.call(x);
        TensorAssert.Close(unmerged, merged, 1e-5);
        model.Layer.Unmerge();
        TensorAssert.Close(residual, model.Layer.Weight, 1e-6);
    }

    [Fact]
    public void AnUncalibratedAdapterRefusesToRunAndCalibrationNeedsDataOrAFile()
    {
        using var w = torch.eye(3);
        using var model = new CordaHolder(w, new LoRAOptions(Rank: 1, Init: LoRAInit.CorDA));
        using var x = torch.ones(2, 3);
        var refused = Assert.Throws<PeftConfigurationException>(() => model.call(x));
        Assert.Contains("q_proj", refused.Message, StringComparison.Ordinal);
        Assert.Contains("PreprocessCorDA", refused.Message, StringComparison.Ordinal);
        TensorAssert.Close(w, model.Layer.Weight, 0);   // nothing rewritten yet

        var noRun = Assert.Throws<InvalidOperationException>(() => model.PreprocessCorDA(null));
        Assert.Contains("run", noRun.Message, StringComparison.Ordinal);

        // A layer the calibration never reaches is named.
        var unreached = Assert.Throws<InvalidOperationException>(() => model.PreprocessCorDA(_ => { }));
        Assert.Contains("'q_proj' saw no calibration input", unreached.Message, StringComparison.Ordinal);

        model.PreprocessCorDA(Feed(model, x));
        using var y = model.call(x);
        var again = Assert.Throws<InvalidOperationException>(() => model.PreprocessCorDA(Feed(model, x)));
        Assert.Contains("no CorDA adapter", again.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ArgumentsAndDoRAAreRefusedByName()
    {
        var layer = new PeftLayerInfo(PeftLayerKind.Linear, 8, 8, false, CPU, ScalarType.Float32, "v_proj");
        var kpm = Assert.Throws<PeftConfigurationException>(() => new LoRAOptions(Rank: 2, CorDAMethod: CorDAMethod.Kpm).Validate("default", layer));
        Assert.Contains("Init = LoRAInit.CorDA", kpm.Message, StringComparison.Ordinal);
        Assert.Contains("v_proj", kpm.Message, StringComparison.Ordinal);
        var dora = Assert.Throws<PeftConfigurationException>(() => new DoRAOptions(Rank: 2, Init: LoRAInit.CorDA).Validate("default", layer));
        Assert.Contains("CorDA", dora.Message, StringComparison.Ordinal);
    }
}
