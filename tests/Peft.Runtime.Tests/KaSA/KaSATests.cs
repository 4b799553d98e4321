using Peft.Runtime.Tests.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.KaSA;

/// <summary>
/// KaSA (catalogue 2.6) against hand-computed values: the catalogue's W = diag(3, 2, 1), r = 1 truncation to diag(3, 2, 0)
/// with the adapter adding nothing at init (so the layer is the truncated base, not the original), a forward, its gradients,
/// merge and unmerge on the truncated base, the regulariser (the catalogue's value 5 and one with the defaults), the
/// initialisation and the refused arguments.
/// </summary>
public class KaSATests
{
    private sealed class OneLayer : nn.Module<Tensor, Tensor>
    {
        private readonly AdaptedLinear fc1;

        public OneLayer()
            : base(nameof(OneLayer))
        {
            fc1 = AdaptedLinear.Wrap(nn.Linear(4, 3, dtype: ScalarType.Float64), "fc1");
            register_module("fc1", fc1);
        }

        public AdaptedLinear Fc1 => fc1;

        public override Tensor forward(Tensor x) => fc1.forward(x);
    }

    private static AdaptedLinear Layer(Tensor weight)
    {
        var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: false, dtype: weight.dtype);
        using (torch.no_grad()) linear.weight!.copy_(weight);
        var layer = AdaptedLinear.Wrap(linear, "q_proj");
        layer.Weight.requires_grad = false;
        return layer;
    }

    private static KaSAAdapter Adapter(AdaptedLinear layer) => (KaSAAdapter)layer.GetAdapter("default");

    private static void Set(Tensor target, Tensor value)
    {
        using var noGrad = torch.no_grad();
        target.copy_(value);
    }

    [Fact]
    public void CatalogueExampleDiag321WithRank1()
    {
        using var w = torch.diag(torch.tensor(new double[] { 3, 2, 1 }));
        using var layer = Layer(w);
        using var x = torch.tensor(new double[,] { { 1, 1, 1 } });
        layer.WithAdapter("default", new KaSAOptions(Rank: 1, Alpha: 2));
        var a = Adapter(layer);

        // The smallest direction (σ = 1) is dropped: W becomes diag(3, 2, 0). B = 0, so the layer is the truncated base.
        using var truncated = torch.diag(torch.tensor(new double[] { 3, 2, 0 }));
        TensorAssert.Close(truncated, layer.Weight, 1e-12);
        Assert.True(layer.HoldsResidualBase);
        using var atInit = layer.forward(x);
        TensorAssert.Close(torch.tensor(new double[,] { { 3, 2, 0 } }), atInit, 1e-12);   // the original gives [3, 2, 1]

        // A = [1, 0, 1], B = [1, 0, 2]ᵀ, d = [3], s = α/r = 2: ΔW = 6·B A = [[6,0,6],[0,0,0],[12,0,12]];
        // y = diag(3,2,0)·x + ΔW·x = [3,2,0] + [12,0,24] = [15, 2, 24].
        Set(a.A, torch.tensor(new double[,] { { 1, 0, 1 } }));
        Set(a.B, torch.tensor(new double[,] { { 1 }, { 0 }, { 2 } }));
        Set(a.Diag, torch.tensor(new double[] { 3 }));
        using var y = layer.forward(x);
        TensorAssert.Close(torch.tensor(new double[,] { { 15, 2, 24 } }), y, 1e-12);

        // L = Σy, h = A x = 2: ∂L/∂d = s·h·ΣB = 2·2·3 = 12; ∂L/∂A = s·d·(Bᵀ1)·xᵀ = 18·[1,1,1]; ∂L/∂B = s·d·h = 12 per row.
        using var loss = y.sum();
        loss.backward();
        TensorAssert.Close(torch.tensor(new double[] { 12 }), a.Diag.grad!, 1e-12);
        TensorAssert.Close(torch.tensor(new double[,] { { 18, 18, 18 } }), a.A.grad!, 1e-12);
        TensorAssert.Close(torch.tensor(new double[,] { { 12 }, { 12 }, { 12 } }), a.B.grad!, 1e-12);
        Assert.Null(layer.Weight.grad);

        // Merge writes diag(3,2,0) + ΔW and computes the same output; unmerge restores the truncated base, not diag(3, 2, 1).
        using var delta = a.DeltaWeight();
        TensorAssert.Close(torch.tensor(new double[,] { { 6, 0, 6 }, { 0, 0, 0 }, { 12, 0, 12 } }), delta, 1e-12);
        layer.Merge();
        TensorAssert.Close(torch.tensor(new double[,] { { 9, 0, 6 }, { 0, 2, 0 }, { 12, 0, 12 } }), layer.Weight, 1e-12);
        using (torch.no_grad())
        {
            using var merged = layer.forward(x);
            TensorAssert.Close(y.detach(), merged, 1e-12);
        }

        layer.Unmerge();
        TensorAssert.Close(truncated, layer.Weight, 1e-12);
    }

    [Fact]
    public void TheTwoProductForwardEqualsTheMergedWeightOnARandomLayer()
    {
        using var w = torch.randn(new long[] { 7, 5 }, dtype: ScalarType.Float64, generator: new Generator(3));
        using var singular = linalg.svdvals(w);
        using var layer = Layer(w);
        layer.WithAdapter("default", new KaSAOptions(Rank: 2, Alpha: 3, UseRsLora: true));
        var a = Adapter(layer);
        TensorAssert.Randomize(a.B);

        // The base keeps the 3 largest singular values and gets exactly 2 zero ones.
        using var after = linalg.svdvals(layer.Weight);
        TensorAssert.Close(singular.narrow(0, 0, 3), after.narrow(0, 0, 3), 1e-10);
        Assert.True(after.narrow(0, 3, 2).abs().max().ToDouble() < 1e-10);

        using var x = torch.randn(new long[] { 4, 5 }, dtype: ScalarType.Float64, generator: new Generator(4));
        using var unmerged = layer.forward(x);
        using var delta = a.DeltaWeight();
        using var expectedWeight = layer.Weight + delta;
        using var expected = x.matmul(expectedWeight.t());
        TensorAssert.Close(expected, unmerged, 1e-10);
        Assert.Equal(3 / Math.Sqrt(2), a.Scaling, 12);
    }

    [Fact]
    public void RegulariserCatalogueValueIsFive()
    {
        // The catalogue's A = I₂, B = I₂, d = [1, 2], β = γ = 1 ⇒ 1 + 4 + 0 + 0 = 5. KaSA needs r < min(in, out), so the
        // factors sit in a 3×3 layer with r = 2: A = [I₂ 0] (AAᵀ = I₂) and B = [I₂; 0] (BᵀB = I₂).
        using var layer = Layer(torch.eye(3, dtype: ScalarType.Float64));
        layer.WithAdapter("default", new KaSAOptions(Rank: 2, Beta: 1, Gamma: 1));
        var a = Adapter(layer);
        Set(a.A, torch.tensor(new double[,] { { 1, 0, 0 }, { 0, 1, 0 } }));
        Set(a.B, torch.tensor(new double[,] { { 1, 0 }, { 0, 1 }, { 0, 0 } }));
        Set(a.Diag, torch.tensor(new double[] { 1, 2 }));
        using var term = a.LossTerm();
        Assert.Equal(5.0, term.ToDouble(), 12);
    }

    [Fact]
    public void RegulariserWithTheDefaultsIsWhatTheModelAddsToTheLoss()
    {
        // B = 0 (init): ‖BᵀB − I₂‖_F = √2; A = √2·[I₂ 0]: ‖AAᵀ − I₂‖_F = ‖I₂‖_F = √2; d = [1, 2]: Σd² = 5.
        // 1e-4·5 + 1e-3·2√2 = 0.0005 + 0.0028284271... = 0.0033284271...
        using var model = new OneLayer();
        model.Fc1.WithAdapter("default", new KaSAOptions(Rank: 2));
        var a = Adapter(model.Fc1);
        using (torch.no_grad())
        {
            a.A.zero_();
            a.A[0, 0] = torch.tensor(Math.Sqrt(2), dtype: a.A.dtype);
            a.A[1, 1] = torch.tensor(Math.Sqrt(2), dtype: a.A.dtype);
            a.Diag.copy_(torch.tensor(new double[] { 1, 2 }, dtype: a.Diag.dtype));
        }

        double expected = 1e-4 * 5 + 1e-3 * 2 * Math.Sqrt(2);
        using var term = a.LossTerm();
        Assert.Equal(expected, term.ToDouble(), 6);
        using var summed = model.AdapterLossTerm();
        Assert.Equal(term.ToDouble(), summed.ToDouble(), 12);

        // Its gradient reaches d (2β·d) and A; it is the term the trainer adds (model.AdapterLossTerms()).
        using var again = model.AdapterLossTerms()();
        again.backward();
        TensorAssert.Close(torch.tensor(new double[] { 2e-4, 4e-4 }, dtype: a.Diag.dtype), a.Diag.grad!, 1e-7);
        Assert.NotNull(a.A.grad);
    }

    [Fact]
    public void InitialisationAndTrainableCount()
    {
        using var layer = Layer(torch.randn(new long[] { 6, 9 }, dtype: ScalarType.Float64, generator: new Generator(8)));
        layer.WithAdapter("default", new KaSAOptions(Rank: 3));
        var a = Adapter(layer);
        Assert.Equal(0.0, a.B.abs().max().ToDouble());
        Assert.True(a.A.abs().max().ToDouble() > 0);
        Assert.Equal(new long[] { 3 }, a.Diag.shape);
        Assert.True(a.Diag.abs().max().ToDouble() > 0);
        Assert.Equal(KaSARules.ParameterCount(9, 6, 3), a.TrainableParameterCount);
        Assert.Equal(3 * (9 + 6) + 3, a.TrainableParameterCount);
        Assert.Equal(new[] { "lora_A.weight", "lora_B.weight", "lora_diag" }, a.PeftTensors().Select(t => t.PeftName));
    }

    [Theory]
    [InlineData(3, 1e-4, 1e-3, "rank 3 leaves no singular direction", "at most 2")]
    [InlineData(0, 1e-4, 1e-3, "rank must be positive", "q_proj")]
    [InlineData(1, -1.0, 1e-3, "Beta must be finite and >= 0, got -1", "q_proj")]
    [InlineData(1, 1e-4, double.PositiveInfinity, "Gamma must be finite and >= 0", "q_proj")]
    public void BadArgumentsAreRefusedNamingTheMemberAndTheFix(int rank, double beta, double gamma, string expected, string alsoExpected)
    {
        using var layer = Layer(torch.eye(3, dtype: ScalarType.Float64));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new KaSAOptions(Rank: rank, Beta: beta, Gamma: gamma)));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains(alsoExpected, ex.Message, StringComparison.Ordinal);
        Assert.Contains("q_proj", ex.Message, StringComparison.Ordinal);
        TensorAssert.Equal(torch.eye(3, dtype: ScalarType.Float64), layer.Weight);   // nothing truncated
    }
}
