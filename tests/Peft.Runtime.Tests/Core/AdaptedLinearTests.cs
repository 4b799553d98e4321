using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Core;

public class AdaptedLinearTests
{
    [Fact]
    public void WrapNullNamesTheMemberAndTheFix()
    {
        var ex = Assert.Throws<PeftConfigurationException>(() => AdaptedLinear.Wrap(null, "q_proj"));
        Assert.Contains("'q_proj'", ex.Message);
        Assert.Contains("null", ex.Message);
        Assert.Contains("Linear(", ex.Message);
        Assert.Equal("q_proj", ex.MemberName);
    }

    [Fact]
    public void WrapOfAnotherLayerTypeNamesMemberTypeAndFix()
    {
        using var conv = nn.Conv1d(4, 4, 3);
        var ex = Assert.Throws<PeftConfigurationException>(() => AdaptedLinear.Wrap(conv, "v_proj"));
        Assert.Contains("'v_proj'", ex.Message);
        Assert.Contains("Conv1d", ex.Message);
        Assert.Contains("TorchSharp.Modules.Linear", ex.Message);
        Assert.Contains("Remove the attribute", ex.Message);
    }

    [Fact]
    public void WrapTakesOverTheParametersUnderTheirOwnNamesAndIsIdempotent()
    {
        var linear = nn.Linear(6, 5);
        var weight = linear.weight;
        var bias = linear.bias!;
        var wrapped = AdaptedLinear.Wrap(linear, "q_proj");

        Assert.Same(weight, wrapped.Weight);
        Assert.Same(bias, wrapped.Bias);
        Assert.Equal(6, wrapped.InFeatures);
        Assert.Equal(5, wrapped.OutFeatures);
        Assert.Same(wrapped, AdaptedLinear.Wrap(wrapped, "q_proj"));

        wrapped.WithLoRA("default", new LoRAOptions(Rank: 2));
        var keys = wrapped.state_dict().Keys.ToArray();
        Assert.Equal(new[] { "weight", "bias", "default.lora_A.weight", "default.lora_B.weight" }, keys);
    }

    [Fact]
    public void WrapperAndBaseLinearAgreeWithoutAdapters()
    {
        torch.manual_seed(1);
        var linear = nn.Linear(6, 5);
        using var x = torch.randn(3, 6);
        using var expected = linear.call(x);
        var wrapped = AdaptedLinear.Wrap(linear, "q_proj");
        using var actual = wrapped.call(x);
        TensorAssert.Equal(expected, actual);
    }

    [Theory]
    [InlineData("default", "already has an adapter named 'default'")]
    [InlineData("weight", "reserved")]
    [InlineData("bias", "reserved")]
    [InlineData("a.b", "contains '.'")]
    [InlineData("", "empty name")]
    public void InvalidOrDuplicateAdapterNamesAreRejected(string name, string expectedText)
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 8), "q_proj").WithLoRA("default", new LoRAOptions(Rank: 2));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithLoRA(name, new LoRAOptions(Rank: 2)));
        Assert.Contains(expectedText, ex.Message);
        Assert.Contains("'q_proj'", ex.Message);
        Assert.Single(layer.Adapters);
        Assert.Equal(4, layer.state_dict().Count);
    }

    [Fact]
    public void AddAdapterRejectsAdaptersOfAnotherShape()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 6), "o_proj");
        using var adapter = new LoRAAdapter("x", PeftLayerInfo.ForLinear(6, 8), new LoRAOptions(Rank: 2));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.AddAdapter(adapter));
        Assert.Contains("'o_proj' is a Linear layer of sizes 8 -> 6", ex.Message);
    }

    [Fact]
    public void AddAdapterRejectsAdaptersOfAnotherDtype()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 6), "o_proj");
        using var adapter = new LoRAAdapter("x", PeftLayerInfo.ForLinear(8, 6) with { DType = ScalarType.Float64 }, new LoRAOptions(Rank: 2));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.AddAdapter(adapter));
        Assert.Contains("Float64", ex.Message);
        Assert.Empty(layer.Adapters);
    }

    [Fact]
    public void AdaptersAreCreatedWithTheBaseWeightsDtype()
    {
        var linear = nn.Linear(8, 6, dtype: ScalarType.Float64);
        var layer = AdaptedLinear.Wrap(linear, "q_proj")
            .WithLoRA("l", new LoRAOptions(Rank: 2))
            .WithKronecker("k", new KroneckerOptions(Rank: 2));
        foreach (var adapter in layer.Adapters)
        {
            foreach (var (_, p) in adapter.PeftTensors())
            {
                Assert.Equal(ScalarType.Float64, p.dtype);
            }
        }
    }

    [Fact]
    public void InputsWithSeveralLeadingDimensionsMatchTheFlattenedComputation()
    {
        torch.manual_seed(2);
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 6), "q_proj").WithLoRA("default", new LoRAOptions(Rank: 2));
        var lora = (LoRAAdapter)layer.Adapters[0];
        TensorAssert.Randomize(lora.B);
        using var x = torch.randn(2, 3, 8);
        using var y = layer.call(x);
        Assert.Equal(new long[] { 2, 3, 6 }, y.shape);
        using var x2 = x.reshape(6, 8);
        using var y2 = layer.call(x2);
        using var y2r = y2.reshape(2, 3, 6);
        TensorAssert.Close(y2r, y, 1e-6);

        using var v = torch.randn(8);
        using var yv = layer.call(v);
        Assert.Equal(new long[] { 6 }, yv.shape);
    }

    [Fact]
    public void ConvertingTheDtypeKeepsKeysAndNumerics()
    {
        torch.manual_seed(3);
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 6), "q_proj")
            .WithLoRA("l", new LoRAOptions(Rank: 2))
            .WithKronecker("k", new KroneckerOptions(Rank: 2));
        layer.SetActiveAdapters("l", "k");
        TensorAssert.Randomize(((LoRAAdapter)layer.GetAdapter("l")).B);
        TensorAssert.Randomize(((KroneckerAdapter)layer.GetAdapter("k")).W1!);
        using var x = torch.randn(4, 8);
        using var before = layer.call(x);
        var keysBefore = layer.state_dict().Keys.ToArray();

        layer.to(ScalarType.Float64);

        Assert.Equal(ScalarType.Float64, layer.Weight.dtype);
        Assert.Equal(ScalarType.Float64, layer.Bias!.dtype);
        Assert.Equal(keysBefore, layer.state_dict().Keys.ToArray());
        Assert.All(layer.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        using var x64 = x.to(ScalarType.Float64);
        using var after = layer.call(x64);
        Assert.Equal(ScalarType.Float64, after.dtype);
        TensorAssert.Close(before, after, 1e-5);
    }

    [Fact]
    public void TakenOverParametersSurviveCollectionOfTheOriginalLayer()
    {
        torch.manual_seed(4);
        var wrapped = WrapUnreachableLinear(out var expectedSum);
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        using var sum = wrapped.Weight.sum();
        Assert.Equal(expectedSum, sum.item<float>(), 5);
        using var x = torch.randn(2, 8);
        using var y = wrapped.call(x);
        Assert.Equal(new long[] { 2, 8 }, y.shape);
    }

    [Fact]
    public void DisposingWrappersReleasesEverythingOnce()
    {
        var layer = AdaptedLinear.Wrap(nn.Linear(8, 8), "q_proj")
            .WithLoRA("a", new LoRAOptions(Rank: 2))
            .WithKronecker("k", new KroneckerOptions(Rank: 2));
        var weight = layer.Weight;
        Assert.False(weight.IsInvalid);
        var loraA = ((LoRAAdapter)layer.GetAdapter("a")).A;
        layer.Dispose();
        Assert.True(weight.IsInvalid);
        Assert.True(loraA.IsInvalid);

        var prompt = AdaptedEmbedding.Wrap(nn.Embedding(10, 4), "embed").WithPrompt("p", new PromptTuningOptions(VirtualTokens: 2));
        var embeddingWeight = prompt.Weight;
        prompt.Dispose();
        Assert.True(embeddingWeight.IsInvalid);
    }

    private static AdaptedLinear WrapUnreachableLinear(out float weightSum)
    {
        var linear = nn.Linear(8, 8);
        using (var s = linear.weight.sum())
        {
            weightSum = s.item<float>();
        }

        return AdaptedLinear.Wrap(linear, "q_proj").WithLoRA("default", new LoRAOptions(Rank: 2));
    }
}
