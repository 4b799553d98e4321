using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.DoRA;

/// <summary>DoRA against its formula (Liu et al., 2024; PEFT's lora/dora.py) with a hand-computed example.</summary>
public class DoRATests
{
    /// <summary>
    /// W = [[3, 4], [0, 1]], b = 0, r = 1, alpha = 1 (s = 1), A = [[0, 1]], B = [[0], [1]] so s·BA = [[0, 0], [0, 1]].
    /// The magnitude starts at the row norms of W: m = [5, 1]. n = ‖W + s·BA‖ = [5, 2], c = m / n = [1, 0.5], and for
    /// x = [1, 1]: (W + s·BA) x = [7, 2], so y = c ⊙ [7, 2] = [7, 1] (plain LoRA gives [7, 2]).
    /// </summary>
    private static (AdaptedLinear Layer, DoRAAdapter Adapter) HandExample(bool bias = false)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(2, 2, hasBias: bias), "q_proj");
        using (torch.no_grad())
        {
            layer.Weight.copy_(torch.tensor(new float[] { 3, 4, 0, 1 }, new long[] { 2, 2 }));
            layer.Bias?.copy_(torch.tensor(new float[] { 0.5f, -1 }));
        }

        layer.WithAdapter("default", new DoRAOptions(Rank: 1, Alpha: 1));
        var adapter = (DoRAAdapter)layer.GetAdapter("default");
        using (torch.no_grad())
        {
            adapter.A.copy_(torch.tensor(new float[] { 0, 1 }, new long[] { 1, 2 }));
            adapter.B.copy_(torch.tensor(new float[] { 0, 1 }, new long[] { 2, 1 }));
        }

        return (layer, adapter);
    }

    [Fact]
    public void TheMagnitudeStartsAtTheRowNormsOfTheWeightAndTheLayerAtTheBase()
    {
        var (layer, adapter) = HandExample();
        TensorAssert.Close(torch.tensor(new float[] { 5, 1 }), adapter.Magnitude, 1e-6);

        var fresh = AdaptedLinear.Wrap(nn.Linear(16, 8), "v");
        using var x = torch.randn(5, 16);
        using var before = fresh.call(x);
        fresh.WithAdapter("default", new DoRAOptions(Rank: 4, Alpha: 8));
        using var after = fresh.call(x);
        TensorAssert.Close(before, after, 1e-6);
        _ = layer;
    }

    [Fact]
    public void ForwardMatchesTheHandComputedExample()
    {
        var (layer, _) = HandExample();
        using var y = layer.call(torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 }));
        TensorAssert.Close(torch.tensor(new float[] { 7, 1 }, new long[] { 1, 2 }), y, 1e-6);
    }

    [Fact]
    public void TheBiasIsAddedAfterTheRescale()
    {
        var (layer, _) = HandExample(bias: true);
        using var y = layer.call(torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 }));
        TensorAssert.Close(torch.tensor(new float[] { 7.5f, 0 }, new long[] { 1, 2 }), y, 1e-6);
    }

    [Fact]
    public void GradientsTreatTheNormAsAConstant()
    {
        // loss = Σ y. With n detached: ∂/∂m_i = ((W + s·BA) x)_i / n_i = [7/5, 2/2]; ∂/∂B_i = c_i·s·(A x) = [1, 0.5];
        // ∂/∂A = s·Σ_i c_i B_i x = 0.5·[1, 1].
        var (layer, adapter) = HandExample();
        layer.ApplyTrainability();
        using var y = layer.call(torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 }));
        using var loss = y.sum();
        loss.backward();
        TensorAssert.Close(torch.tensor(new float[] { 1.4f, 1 }), adapter.Magnitude.grad!, 1e-6);
        TensorAssert.Close(torch.tensor(new float[] { 1, 0.5f }, new long[] { 2, 1 }), adapter.B.grad!, 1e-6);
        TensorAssert.Close(torch.tensor(new float[] { 0.5f, 0.5f }, new long[] { 1, 2 }), adapter.A.grad!, 1e-6);
        Assert.Null(layer.Weight.grad);
    }

    [Fact]
    public void MergeWritesTheRescaledWeightAndUnmergeRestoresIt()
    {
        // W' = c ⊙ (W + s·BA) = [[3, 4], [0, 2]] with rows scaled by [1, 0.5] = [[3, 4], [0, 1]].
        var (layer, _) = HandExample(bias: true);
        using var original = layer.Weight.detach().clone();
        using var bias = layer.Bias!.detach().clone();
        layer.Merge();
        TensorAssert.Close(torch.tensor(new float[] { 3, 4, 0, 1 }, new long[] { 2, 2 }), layer.Weight, 1e-6);
        TensorAssert.Equal(bias, layer.Bias!);
        using var merged = layer.call(torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 }));
        TensorAssert.Close(torch.tensor(new float[] { 7.5f, 0 }, new long[] { 1, 2 }), merged, 1e-6);
        layer.Unmerge();
        TensorAssert.Close(original, layer.Weight, 1e-6);
    }

    [Fact]
    public void TheTrainingFormWithDropoutMatchesTheSharedFormWhenNothingIsDropped()
    {
        // PEFT's dropout path y = Wx + b + (c − 1) ⊙ W·x + c ⊙ s·BAx equals the shared path c ⊙ (Wx + s·BAx) + b.
        var layer = AdaptedLinear.Wrap(nn.Linear(12, 6), "q");
        layer.WithAdapter("default", new DoRAOptions(Rank: 3, Alpha: 6));
        var adapter = (DoRAAdapter)layer.GetAdapter("default");
        TensorAssert.Randomize(adapter.A);
        TensorAssert.Randomize(adapter.B);
        TensorAssert.Randomize(adapter.Magnitude);
        layer.eval();
        using var x = torch.randn(4, 12);
        using var shared = layer.call(x);
        using var separate = F.linear(x, layer.Weight, layer.Bias);
        adapter.AddSeparately(x, separate, layer.Weight);
        TensorAssert.Close(shared, separate, 1e-5);
    }

    [Fact]
    public void TwoDoRAAdaptersComposeOnOneBaseProduct()
    {
        // (1 + Σ(c_k − 1)) ⊙ Wx + Σ c_k ⊙ s_k·B_k A_k x + b, from the parameters.
        var layer = AdaptedLinear.Wrap(nn.Linear(10, 7), "q");
        layer.WithAdapter("a", new DoRAOptions(Rank: 2, Alpha: 4)).WithAdapter("b", new DoRAOptions(Rank: 3, Alpha: 3));
        var a = (DoRAAdapter)layer.GetAdapter("a");
        var b = (DoRAAdapter)layer.GetAdapter("b");
        foreach (var p in new[] { a.A, a.B, a.Magnitude, b.A, b.B, b.Magnitude }) TensorAssert.Randomize(p);
        layer.SetActiveAdapters("a", "b");
        using var x = torch.randn(3, 10);
        using var y = layer.call(x);
        using (torch.no_grad())
        {
            using var ca = a.RowScale(layer.Weight);
            using var cb = b.RowScale(layer.Weight);
            using var wx = x.matmul(layer.Weight.t());
            var expected = wx * (ca + cb - 1) + x.matmul(a.A.t()).matmul(a.B.t()) * a.Scaling * ca + x.matmul(b.A.t()).matmul(b.B.t()) * b.Scaling * cb + layer.Bias!;
            TensorAssert.Close(expected, y, 1e-5);
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32, 1e-6)]
    [InlineData(ScalarType.Float64, 1e-12)]
    [InlineData(ScalarType.BFloat16, 1e-2)]
    public void TheRowScaleIsTheMagnitudeOverTheNormOfTheFormedSum(ScalarType dtype, double tolerance)
    {
        // c = m / ‖W + s·BA‖, computed without forming W + s·BA: compare with the formed sum, B and A away from their init.
        var layer = AdaptedLinear.Wrap(nn.Linear(48, 64, dtype: dtype), "q");
        layer.WithAdapter("default", new DoRAOptions(Rank: 4, Alpha: 8));
        var a = (DoRAAdapter)layer.GetAdapter("default");
        foreach (var p in new[] { a.A, a.B }) TensorAssert.Randomize(p);
        using (torch.no_grad()) a.Magnitude.copy_(torch.rand(64) + 0.5); // away from zero, where the relative error is 0/0
        using var c = a.RowScale(layer.Weight);
        using (torch.no_grad())
        {
            using var w = layer.Weight.to(ScalarType.Float64);
            using var delta = a.B.to(ScalarType.Float64).matmul(a.A.to(ScalarType.Float64)) * a.Scaling;
            using var norm = torch.linalg.vector_norm(w + delta, 2, new long[] { 1 }, false);
            using var expected = a.Magnitude.to(ScalarType.Float64) / norm;
            using var relative = ((c.to(ScalarType.Float64) - expected) / expected).abs().max();
            Assert.True(relative.item<double>() <= tolerance, $"{dtype}: relative error {relative.item<double>():G3}");
        }
        Assert.Equal(dtype, c.dtype);
    }

    [Fact]
    public void ADoRAFileIsALoRAConfigWithUseDoraAndTheMagnitudeWithoutWeightSuffix()
    {
        string dir = Path.Combine(Path.GetTempPath(), "peft-dora-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var (layer, _) = HandExample();
            using var model = nn.Sequential(("q_proj", layer));
            AdapterFiles.Save(model, dir);
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigFileName)))!.AsObject();
            Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
            Assert.True(config["use_dora"]!.GetValue<bool>());
            using var reader = SafetensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsFileName));
            Assert.Equal(new long[] { 2 }, reader.GetInfo("base_model.model.q_proj.lora_magnitude_vector").Shape);
            Assert.Same(DoRAMethod.Instance, PeftMethods.ForConfig(AdapterConfig.Read(Path.Combine(dir, AdapterFiles.ConfigFileName))));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AConfigWithUseDoraIsReadByDoRAAndWithoutItByLoRA()
    {
        var dora = AdapterConfig.FromJson(JsonNode.Parse("""{"peft_type": "LORA", "use_dora": true, "r": 4, "lora_alpha": 8}""")!.AsObject(), "t.json");
        var lora = AdapterConfig.FromJson(JsonNode.Parse("""{"peft_type": "LORA", "r": 4, "lora_alpha": 8}""")!.AsObject(), "t.json");
        Assert.Same(DoRAMethod.Instance, PeftMethods.ForConfig(dora));
        Assert.Same(LoRAMethod.Instance, PeftMethods.ForConfig(lora));
        Assert.Equal(new DoRAOptions(Rank: 4, Alpha: 8), DoRAMethod.Instance.ReadOptions(dora, null));
        var ex = Assert.Throws<AdapterFormatException>(() => LoRAMethod.Instance.ReadOptions(dora, null));
        Assert.Contains("use_dora", ex.Message);
    }
}
