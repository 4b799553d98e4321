using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// The calibration seam (<see cref="LayerInputCapture"/>): each wrapped linear layer's inputs over calibration batches, as rows,
/// with padding removed by <see cref="LayerInputCapture.RowMask"/>; the second moments Σ XᵀX by hand; outputs unchanged while
/// capturing and nothing observed after the capture ends; selection, a mismatched mask and a second capture refused by name.
/// </summary>
public class LayerInputCaptureTests
{
    private static Tensor Batch(float[,] rows) => torch.tensor(rows).unsqueeze(0);

    [Fact]
    public void SecondMomentsSumXtXOverBatchesByHand()
    {
        using var model = new Holder();
        // fc1 sees x itself: [[1, 2], [3, 4]] then [[1, 0]] ⇒ Σ XᵀX = [[10, 14], [14, 20]] + [[1, 0], [0, 0]] = [[11, 14], [14, 20]], 3 rows.
        var moments = LayerInputCapture.SecondMoments(model, _ =>
        {
            using var a = model.call(Batch(new float[,] { { 1, 2 }, { 3, 4 } }));
            using var b = model.call(Batch(new float[,] { { 1, 0 } }));
        });
        Assert.Equal(new[] { "fc1", "fc2" }, moments.Keys.Order());
        var (sum, rows) = moments["fc1"];
        Assert.Equal(3, rows);
        using var expected = torch.tensor(new double[,] { { 11, 14 }, { 14, 20 } });
        TensorAssert.Close(expected, sum, 1e-12);

        // fc2 sees fc1's output h = x W₁ᵀ + b₁: the same sum from the outputs computed here.
        using var x = torch.tensor(new float[,] { { 1, 2 }, { 3, 4 }, { 1, 0 } });
        using var h = model.Fc1.forward(x).to(ScalarType.Float64);
        using var hth = h.t().matmul(h);
        TensorAssert.Close(hth, moments["fc2"].SecondMoment, 1e-5);
        foreach (var (s, _) in moments.Values) s.Dispose();
    }

    [Fact]
    public void RowMaskDropsPaddingPositions()
    {
        using var model = new Holder();
        var seen = new List<float[]>();
        var rows = LayerInputCapture.Run(model, capture =>
        {
            capture.RowMask = torch.tensor(new[,] { { true, false, true } });
            using var y = model.call(Batch(new float[,] { { 1, 2 }, { 9, 9 }, { 5, 6 } }));
        }, (path, _, x) => { if (path == "fc1") seen.Add(x.flatten().data<float>().ToArray()); });
        Assert.Equal(2, rows["fc1"]);
        Assert.Equal(new[] { 1f, 2f, 5f, 6f }, seen.Single());
    }

    [Fact]
    public void AMaskOfTheWrongSizeIsRefusedNamingTheLayer()
    {
        using var model = new Holder();
        var ex = Assert.Throws<InvalidOperationException>(() => LayerInputCapture.Run(model, capture =>
        {
            capture.RowMask = torch.tensor(new[] { true, true });
            using var y = model.call(Batch(new float[,] { { 1, 2 }, { 3, 4 }, { 5, 6 } }));
        }, (_, _, _) => { }));
        Assert.Contains("'fc1'", ex.Message);
        Assert.Contains("RowMask", ex.Message);
    }

    [Fact]
    public void OutputsAreUnchangedAndNothingIsObservedAfterTheCapture()
    {
        using var model = new Holder();
        using var x = Batch(new float[,] { { 1, 2 }, { 3, 4 } });
        using var before = model.call(x);
        int calls = 0;
        using (var capture = LayerInputCapture.Start(model, (_, _, _) => calls++, (path, _) => path == "fc2"))
        {
            Assert.Equal(new[] { "fc2" }, capture.Layers);
            using var during = model.call(x);
            TensorAssert.Equal(before, during);
            Assert.Equal(1, calls);
            Assert.Throws<InvalidOperationException>(() => LayerInputCapture.Start(model, (_, _, _) => { }));
        }

        using var after = model.call(x);
        Assert.Equal(1, calls);
        using var again = LayerInputCapture.Start(model, (_, _, _) => calls++);
        Assert.Equal(2, again.Layers.Count);
    }

    private sealed class Holder : nn.Module<Tensor, Tensor>
    {
        private readonly AdaptedLinear fc1;
        private readonly AdaptedLinear fc2;

        public Holder()
            : base(nameof(Holder))
        {
            torch.manual_seed(4);
            fc1 = AdaptedLinear.Wrap(nn.Linear(2, 3), "fc1");
            fc2 = AdaptedLinear.Wrap(nn.Linear(3, 2), "fc2");
            register_module("fc1", fc1);
            register_module("fc2", fc2);
        }

        public AdaptedLinear Fc1 => fc1;

        public override Tensor forward(Tensor x)
        {
            using var h = fc1.forward(x);
            return fc2.forward(h);
        }
    }
}
