using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.PTuning;

/// <summary>
/// P-tuning against its formula (catalogue 5.2): <c>out = cat([encoder(T), E(ids)], 1)</c> with PEFT's MLP encoder
/// <c>Linear–ReLU–Linear–ReLU–Linear</c> computed by hand, gradients by hand (they reach the encoder and its table, not the
/// base), PEFT's bidirectional LSTM encoder against an independent step-by-step LSTM, PEFT's parameter names and init, the
/// inference mode, merge leaving the prompt acting, and the options' errors.
/// </summary>
public sealed class PTuningTests
{
    /// <summary>An embedding 6 x 2 holding 0..11 row by row (E(i) = [2i, 2i + 1]), float64.</summary>
    internal static AdaptedEmbedding Embedding()
    {
        var e = nn.Embedding(6, 2, dtype: ScalarType.Float64);
        using (torch.no_grad()) e.weight!.copy_(torch.arange(12, dtype: ScalarType.Float64).reshape(6, 2));
        return AdaptedEmbedding.Wrap(e, "embed");
    }

    internal static void Set(Tensor p, params double[] values)
    {
        using var noGrad = torch.no_grad();
        using var v = torch.tensor(values, p.shape, ScalarType.Float64);
        p.copy_(v);
    }

    /// <summary>V = 2, d = h = 2: T = [[1, -1], [2, 0]]; W0 = I, b0 = [0, -0.5]; W2 = [[1, 1], [-1, 2]], b2 = [0, 1.5];
    /// W4 = [[2, 0], [1, 3]], b4 = [0.5, 0].</summary>
    internal static PTuningAdapter HandAdapter(AdaptedEmbedding layer)
    {
        layer.WithAdapter("default", new PTuningOptions(VirtualTokens: 2, EncoderHiddenSize: 2));
        var a = (PTuningAdapter)layer.GetAdapter("default");
        var p = a.named_parameters().ToDictionary(x => x.name, x => (Tensor)x.parameter);
        Set(p["embedding.weight"], 1, -1, 2, 0);
        Set(p["mlp_head.0.weight"], 1, 0, 0, 1);
        Set(p["mlp_head.0.bias"], 0, -0.5);
        Set(p["mlp_head.2.weight"], 1, 1, -1, 2);
        Set(p["mlp_head.2.bias"], 0, 1.5);
        Set(p["mlp_head.4.weight"], 2, 0, 1, 3);
        Set(p["mlp_head.4.bias"], 0.5, 0);
        return a;
    }

    [Fact]
    public void TheMlpEncodersPromptIsPrependedAsComputedByHand()
    {
        // Row 1: T W0ᵀ + b0 = [1, -1.5] → ReLU [1, 0] → W2 · + b2 = [1, 0.5] → W4 · + b4 = [2.5, 2.5].
        // Row 2: [2, -0.5] → [2, 0] → [2, -0.5] → ReLU [2, 0] → [4.5, 2].
        using var layer = Embedding();
        HandAdapter(layer);
        using var ids = torch.tensor(new long[] { 3, 0, 1, 2 }, new long[] { 2, 2 });
        using var y = layer.forward(ids);
        Assert.Equal(new long[] { 2, 4, 2 }, y.shape);
        Assert.Equal(new double[] { 2.5, 2.5, 4.5, 2, 6, 7, 0, 1, 2.5, 2.5, 4.5, 2, 2, 3, 4, 5 }, y.data<double>().ToArray());
    }

    [Fact]
    public void GradientsReachTheEncoderAndItsTableAsComputedByHandAndNotTheBase()
    {
        // L = sum of the output of a batch of 2: dL/dprompt = 2 everywhere. With the activations above (a0 = [1, 0], [2, 0];
        // a2 = [1, 0.5], [2, 0]; ReLU masks [1, 0], [1, 0] after L0 and [1, 1], [1, 0] after L2):
        // dW4 = Σ g a2ᵀ = [[6, 1], [6, 1]], db4 = [4, 4]; da2 = W4ᵀ g = [6, 6];
        // dz2 = [6, 6], [6, 0]: dW2 = [[18, 0], [6, 0]], db2 = [12, 6]; da0 = W2ᵀ dz2 = [0, 18], [6, 6];
        // dz0 = [0, 0], [6, 0]: dW0 = [[12, 0], [0, 0]], db0 = [6, 0]; dT = W0ᵀ dz0 = [[0, 0], [6, 0]].
        using var layer = Embedding();
        layer.Weight.requires_grad = false;
        var a = HandAdapter(layer);
        using var ids = torch.tensor(new long[] { 3, 0, 1, 2 }, new long[] { 2, 2 });
        using var y = layer.forward(ids);
        using var loss = y.sum();
        loss.backward();
        var grads = a.named_parameters().ToDictionary(x => x.name, x => x.parameter.grad!.data<double>().ToArray());
        Assert.Equal(new double[] { 6, 1, 6, 1 }, grads["mlp_head.4.weight"]);
        Assert.Equal(new double[] { 4, 4 }, grads["mlp_head.4.bias"]);
        Assert.Equal(new double[] { 18, 0, 6, 0 }, grads["mlp_head.2.weight"]);
        Assert.Equal(new double[] { 12, 6 }, grads["mlp_head.2.bias"]);
        Assert.Equal(new double[] { 12, 0, 0, 0 }, grads["mlp_head.0.weight"]);
        Assert.Equal(new double[] { 6, 0 }, grads["mlp_head.0.bias"]);
        Assert.Equal(new double[] { 0, 0, 6, 0 }, grads["embedding.weight"]);
        Assert.Null(layer.Weight.grad);
    }

    [Fact]
    public void TheLstmEncoderIsPeftsBidirectionalLstmAndItsHead()
    {
        // d = 3, h = 4, two layers: the prompt equals a step-by-step LSTM (gates i, f, g, o; PyTorch's layout), run forward and
        // backward over the table, concatenated, the second layer reading the first's 2h outputs, then Linear–ReLU–Linear.
        var e = nn.Embedding(5, 3, dtype: ScalarType.Float64);
        using var layer = AdaptedEmbedding.Wrap(e, "embed");
        torch.manual_seed(11);
        layer.WithAdapter("default", new PTuningOptions(VirtualTokens: 4, EncoderHiddenSize: 4, EncoderType: PromptEncoderType.LSTM));
        var a = (PTuningAdapter)layer.GetAdapter("default");
        var p = a.named_parameters().ToDictionary(x => x.name, x => (Tensor)x.parameter);
        string[] expected =
        {
            "embedding.weight",
            "lstm_head.weight_ih_l0", "lstm_head.weight_hh_l0", "lstm_head.bias_ih_l0", "lstm_head.bias_hh_l0",
            "lstm_head.weight_ih_l0_reverse", "lstm_head.weight_hh_l0_reverse", "lstm_head.bias_ih_l0_reverse", "lstm_head.bias_hh_l0_reverse",
            "lstm_head.weight_ih_l1", "lstm_head.weight_hh_l1", "lstm_head.bias_ih_l1", "lstm_head.bias_hh_l1",
            "lstm_head.weight_ih_l1_reverse", "lstm_head.weight_hh_l1_reverse", "lstm_head.bias_ih_l1_reverse", "lstm_head.bias_hh_l1_reverse",
            "mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.2.weight", "mlp_head.2.bias",
        };
        Assert.Equal(expected.Order(StringComparer.Ordinal), p.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(new long[] { 16, 3 }, p["lstm_head.weight_ih_l0"].shape);
        Assert.Equal(new long[] { 16, 8 }, p["lstm_head.weight_ih_l1"].shape);
        Assert.Equal(new long[] { 8, 8 }, p["mlp_head.0.weight"].shape);
        Assert.Equal(new long[] { 3, 8 }, p["mlp_head.2.weight"].shape);

        // PyTorch's LSTM init: every weight and bias in [-1/sqrt(h), 1/sqrt(h)] = [-0.5, 0.5].
        Assert.All(p.Where(x => x.Key.StartsWith("lstm_head.", StringComparison.Ordinal)), x => Assert.True(x.Value.abs().max().ToDouble() <= 0.5));

        using var noGrad = torch.no_grad();
        var x0 = p["embedding.weight"];
        using var l0 = BiLayer(x0, p, 0);
        using var l1 = BiLayer(l0, p, 1);
        using var hidden = nn.functional.relu(nn.functional.linear(l1, p["mlp_head.0.weight"], p["mlp_head.0.bias"]));
        using var reference = nn.functional.linear(hidden, p["mlp_head.2.weight"], p["mlp_head.2.bias"]);
        using var prompt = ((IPrefixAdapter)a).ComputePrefix();
        Assert.Equal(new long[] { 4, 3 }, prompt.shape);
        Assert.True((prompt - reference).abs().max().ToDouble() < 1e-12, $"LSTM prompt differs from the step-by-step reference by {(prompt - reference).abs().max().ToDouble()}");
    }

    private static Tensor BiLayer(Tensor x, Dictionary<string, Tensor> p, int l)
    {
        using var forward = Direction(x, p, $"_l{l}", reverse: false);
        using var backward = Direction(x, p, $"_l{l}_reverse", reverse: true);
        return torch.cat(new[] { forward, backward }, 1);
    }

    private static Tensor Direction(Tensor x, Dictionary<string, Tensor> p, string suffix, bool reverse)
    {
        var wi = p["lstm_head.weight_ih" + suffix];
        var wh = p["lstm_head.weight_hh" + suffix];
        var b = p["lstm_head.bias_ih" + suffix] + p["lstm_head.bias_hh" + suffix];
        long n = x.shape[0], hSize = wh.shape[1];
        var h = torch.zeros(hSize, dtype: x.dtype);
        var c = torch.zeros(hSize, dtype: x.dtype);
        var outputs = new Tensor[n];
        for (long s = 0; s < n; s++)
        {
            long t = reverse ? n - 1 - s : s;
            var z = wi.matmul(x[t]) + wh.matmul(h) + b;
            var i = z[..(int)hSize].sigmoid();
            var f = z[(int)hSize..(int)(2 * hSize)].sigmoid();
            var g = z[(int)(2 * hSize)..(int)(3 * hSize)].tanh();
            var o = z[(int)(3 * hSize)..].sigmoid();
            c = f * c + i * g;
            h = o * c.tanh();
            outputs[t] = h;
        }

        return torch.stack(outputs, 0);
    }

    [Fact]
    public void TheInitIsPyTorchsDefaultAndTheHiddenSizeDefaultsToTheEmbeddingSize()
    {
        torch.manual_seed(3);
        var e = nn.Embedding(10, 16);
        using var layer = AdaptedEmbedding.Wrap(e, "embed");
        layer.WithAdapter("default", new PTuningOptions(VirtualTokens: 400));
        var p = layer.GetAdapter("default").named_parameters().ToDictionary(x => x.name, x => (Tensor)x.parameter);
        Assert.Equal(new long[] { 16, 16 }, p["mlp_head.0.weight"].shape);   // h = d = 16 (PEFT's unset encoder_hidden_size)
        Assert.Equal(new long[] { 16, 16 }, p["mlp_head.4.weight"].shape);

        // The table is standard normal (mean ≈ 0, std ≈ 1 over 6400 draws); each Linear is U(±1/sqrt(16)) = U(±0.25).
        var table = p["embedding.weight"];
        Assert.InRange(table.mean().ToDouble(), -0.1, 0.1);
        Assert.InRange(table.std().ToDouble(), 0.9, 1.1);
        foreach (var name in new[] { "mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.2.weight", "mlp_head.4.bias" })
        {
            Assert.True(p[name].abs().max().ToDouble() <= 0.25, name);
            Assert.True(p[name].abs().max().ToDouble() > 0.1, name);
        }
    }

    [Fact]
    public void InInferenceModeTheTableIsTheFrozenPromptAndThereIsNoEncoder()
    {
        using var layer = Embedding();
        layer.WithAdapter("default", new PTuningOptions(VirtualTokens: 1, InferenceMode: true));
        var a = (PTuningAdapter)layer.GetAdapter("default");
        Assert.Equal(new[] { "embedding.weight" }, a.named_parameters().Select(x => x.name).ToArray());
        Assert.Empty(a.Heads);
        Assert.False(a.ComputesFileTensors);
        Assert.Same(a.Table, Assert.Single(a.FrozenParameters()));
        Assert.Equal(0, a.TrainableParameterCount);
        Set(a.Table, 7, 8);
        using var ids = torch.tensor(new long[] { 1 }, new long[] { 1, 1 });
        using var y = layer.forward(ids);
        Assert.Equal(new double[] { 7, 8, 2, 3 }, y.data<double>().ToArray());
    }

    [Fact]
    public void MergeLeavesThePromptActingAndTheBaseUntouched()
    {
        using var layer = Embedding();
        HandAdapter(layer);
        using var before = layer.Weight.detach().clone();
        using var ids = torch.tensor(new long[] { 3, 0 }, new long[] { 1, 2 });
        using var unmerged = layer.forward(ids);
        layer.Merge();
        using var merged = layer.forward(ids);
        Assert.True(unmerged.Equals(merged));
        Assert.True(before.Equals(layer.Weight));
        layer.Unmerge();
        Assert.True(before.Equals(layer.Weight));
    }

    [Theory]
    [InlineData(0, 0, PromptEncoderType.MLP, 2, 0.0, "VirtualTokens")]
    [InlineData(4, -1, PromptEncoderType.MLP, 2, 0.0, "EncoderHiddenSize")]
    [InlineData(4, 0, PromptEncoderType.LSTM, 0, 0.0, "EncoderNumLayers")]
    [InlineData(4, 0, PromptEncoderType.LSTM, 2, 1.0, "EncoderDropout")]
    [InlineData(4, 0, PromptEncoderType.MLP, 3, 0.0, "use EncoderType = PromptEncoderType.LSTM")]
    [InlineData(4, 0, PromptEncoderType.MLP, 2, 0.1, "use EncoderType = PromptEncoderType.LSTM")]
    public void BadOptionsNameTheMemberAndTheSetting(int tokens, int hidden, PromptEncoderType type, int layers, double dropout, string expected)
    {
        using var layer = Embedding();
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("default", new PTuningOptions(tokens, hidden, type, layers, dropout)));
        Assert.Contains("'embed'", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }
}
