using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.IA3;

/// <summary>(IA)³ against its formula (Liu et al., 2022; PEFT's ia3/layer.py) with hand-computed examples.</summary>
public class IA3Tests
{
    private static AdaptedLinear Layer(float[] weight, float[] bias, bool feedForward, float[] l, string name = "default", AdaptedLinear? existing = null)
    {
        var layer = existing ?? AdaptedLinear.Wrap(nn.Linear(2, 2), "k_proj");
        if (existing is null)
        {
            using var noGrad = torch.no_grad();
            layer.Weight.copy_(torch.tensor(weight, new long[] { 2, 2 }));
            layer.Bias!.copy_(torch.tensor(bias));
        }

        layer.WithAdapter(name, new IA3Options(FeedForward: feedForward));
        var adapter = (IA3Adapter)layer.GetAdapter(name);
        using (torch.no_grad()) adapter.L.copy_(torch.tensor(l, adapter.L.shape));
        return layer;
    }

    private static Tensor X() => torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 });

    [Fact]
    public void OutputScalingMatchesTheHandComputedExample()
    {
        // W = I, b = [1, 0], l = [2, 3], x = [1, 1]: y = (Wx + b) ⊙ l = [2, 1] ⊙ [2, 3] = [4, 3].
        var layer = Layer(new float[] { 1, 0, 0, 1 }, new float[] { 1, 0 }, feedForward: false, new float[] { 2, 3 });
        using var y = layer.call(X());
        TensorAssert.Close(torch.tensor(new float[] { 4, 3 }, new long[] { 1, 2 }), y, 1e-6);
        Assert.Equal(new long[] { 2, 1 }, ((IA3Adapter)layer.GetAdapter("default")).L.shape);
    }

    [Fact]
    public void InputScalingOfAFeedForwardLayerMatchesTheHandComputedExample()
    {
        // W = [[1, 2], [3, 4]], b = [1, 1], l = [2, 0.5]: x ⊙ l = [2, 0.5], W(x ⊙ l) + b = [3, 8] + [1, 1] = [4, 9].
        var layer = Layer(new float[] { 1, 2, 3, 4 }, new float[] { 1, 1 }, feedForward: true, new float[] { 2, 0.5f });
        using var y = layer.call(X());
        TensorAssert.Close(torch.tensor(new float[] { 4, 9 }, new long[] { 1, 2 }), y, 1e-6);
        Assert.Equal(new long[] { 1, 2 }, ((IA3Adapter)layer.GetAdapter("default")).L.shape);
    }

    [Fact]
    public void MergeMultipliesRowsAndBiasOrColumnsAndUnmergeDivides()
    {
        var output = Layer(new float[] { 1, 0, 0, 1 }, new float[] { 1, 0 }, feedForward: false, new float[] { 2, 3 });
        output.Merge();
        TensorAssert.Close(torch.tensor(new float[] { 2, 0, 0, 3 }, new long[] { 2, 2 }), output.Weight, 1e-6);
        TensorAssert.Close(torch.tensor(new float[] { 2, 0 }), output.Bias!, 1e-6);
        using (var y = output.call(X())) TensorAssert.Close(torch.tensor(new float[] { 4, 3 }, new long[] { 1, 2 }), y, 1e-6);
        output.Unmerge();
        TensorAssert.Close(torch.tensor(new float[] { 1, 0, 0, 1 }, new long[] { 2, 2 }), output.Weight, 1e-6);
        TensorAssert.Close(torch.tensor(new float[] { 1, 0 }), output.Bias!, 1e-6);

        var input = Layer(new float[] { 1, 2, 3, 4 }, new float[] { 1, 1 }, feedForward: true, new float[] { 2, 0.5f });
        input.Merge();
        TensorAssert.Close(torch.tensor(new float[] { 2, 1, 6, 2 }, new long[] { 2, 2 }), input.Weight, 1e-6);
        TensorAssert.Close(torch.tensor(new float[] { 1, 1 }), input.Bias!, 1e-6); // the bias is not scaled
        using (var y = input.call(X())) TensorAssert.Close(torch.tensor(new float[] { 4, 9 }, new long[] { 1, 2 }), y, 1e-6);
    }

    [Fact]
    public void SeveralActiveAdaptersMultiply()
    {
        var layer = Layer(new float[] { 1, 0, 0, 1 }, new float[] { 1, 0 }, feedForward: false, new float[] { 2, 3 });
        Layer(Array.Empty<float>(), Array.Empty<float>(), feedForward: false, new float[] { 0.5f, 2 }, "second", layer);
        layer.SetActiveAdapters("default", "second");
        using var y = layer.call(X());
        TensorAssert.Close(torch.tensor(new float[] { 2, 6 }, new long[] { 1, 2 }), y, 1e-6); // [2, 1] ⊙ [1, 6]
    }

    [Fact]
    public void TheGradientOfTheScaleIsTheBaseOutput()
    {
        var layer = Layer(new float[] { 1, 0, 0, 1 }, new float[] { 1, 0 }, feedForward: false, new float[] { 2, 3 });
        layer.ApplyTrainability();
        using var loss = layer.call(X()).sum();
        loss.backward();
        TensorAssert.Close(torch.tensor(new float[] { 2, 1 }, new long[] { 2, 1 }), ((IA3Adapter)layer.GetAdapter("default")).L.grad!, 1e-6);
        Assert.Null(layer.Weight.grad);
    }

    [Theory]
    [InlineData("encoder.layer.0.output.dense", true)]
    [InlineData("encoder.layer.0.attention.output.dense", true)]   // PEFT's plain suffix test takes the attention output too
    [InlineData("encoder.layer.0.intermediate.dense", false)]
    public void FeedForwardModulesMatchAsPeftsPlainSuffix(string path, bool expected)
        => Assert.Equal(expected, IA3Method.IsFeedForward(path, TargetModules.Names("output.dense")));

    [Fact]
    public void AConfigsFeedForwardModulesMustBeTargets()
    {
        var config = AdapterConfig.FromJson(JsonNode.Parse("""{"peft_type": "IA3", "target_modules": ["k_proj", "v_proj"], "feedforward_modules": ["down_proj"]}""")!.AsObject(), "c.json");
        var ex = Assert.Throws<AdapterFormatException>(() => IA3Method.Instance.ReadOptions(config, null));
        Assert.Contains("subset of \"target_modules\"", ex.Message);
        Assert.Contains("c.json", ex.Message);
    }

    [Fact]
    public void TargetsDecideFeedForwardPerModuleFromFeedForwardModules()
    {
        var targets = new PeftTargets(TargetModules.Names("k_proj", "down_proj"), new IA3Options(FeedForwardModules: TargetModules.Names("down_proj")));
        Assert.False(((IA3Options)targets.OptionsFor("model.layers.0.self_attn.k_proj")).FeedForward);
        Assert.True(((IA3Options)targets.OptionsFor("model.layers.0.mlp.down_proj")).FeedForward);
    }
}
