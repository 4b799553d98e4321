using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Analyzers.Tests;

/// <summary>The compile-time copies of PEFT's LoKr factorization rule and the adapter parameter counts.</summary>
public class ParameterCountTests
{
    [Theory]
    [InlineData(128, -1, 8, 16)]
    [InlineData(768, -1, 24, 32)]
    [InlineData(64, -1, 8, 8)]
    [InlineData(7, -1, 1, 7)]
    [InlineData(64, 4, 4, 16)]
    [InlineData(64, 16, 4, 16)] // a dividing factor is used as is, smaller side first
    [InlineData(1, -1, 1, 1)]
    [InlineData(4096, -1, 64, 64)]
    [InlineData(12, 5, 3, 4)]   // a non-dividing factor bounds the search: 4 <= 5 is allowed
    [InlineData(12, 3, 3, 4)]
    [InlineData(12, 0, 1, 12)]  // factor 0 stops the search at once (PEFT0005 reports it)
    [InlineData(11008, -1, 86, 128)]
    public void Factorization_MatchesPeft(long dimension, int factor, long small, long large)
    {
        var (a, b) = Peft.Generators.Rules.KroneckerRules.Factorize((int)dimension, factor);
        Assert.Equal((small, large), ((long)a, (long)b));
    }

    [Fact]
    public void Factorization_RejectsNonPositiveDimensions()
        => Assert.Throws<ArgumentOutOfRangeException>(() => Peft.Generators.Rules.KroneckerRules.Factorize(0));

    [Theory]
    // Linear(128 -> 64), r = 4: F(128) = (8, 16), F(64) = (8, 8). W1 full [8, 8] = 64; 2r = 8 < max(8, 16), so
    // W2 is w2_a [8, 4] + w2_b [4, 16] = 96.
    [InlineData(128, 64, 4, -1, false, 160)]
    // DecomposeBoth with r = 2: 2r = 4 < max(8, 8), so W1 is 2 * (8 + 8) = 32; W2 is 2 * (8 + 16) = 48.
    [InlineData(128, 64, 2, -1, true, 80)]
    // r = 8: 2r = 16 is not < 16, so W2 stays full [8, 16] = 128; W1 [8, 8] = 64.
    [InlineData(128, 64, 8, -1, false, 192)]
    // DecomposeBoth but r = 4 is not below max(8, 8) / 2: W1 stays full.
    [InlineData(128, 64, 4, -1, true, 160)]
    // Linear(768, 768), r = 8: W1 [24, 24] = 576, W2 = 8 * (32 + 32) = 512.
    [InlineData(768, 768, 8, -1, false, 1088)]
    // Factor 4 on Linear(64, 64): (4, 16) both ways; W1 [4, 4] = 16, W2 = 2 * (16 + 16) = 64.
    [InlineData(64, 64, 2, 4, false, 80)]
    public void KroneckerParameterCount_FollowsLoKrShapes(long inFeatures, long outFeatures, int rank, int factor, bool decomposeBoth, long expected)
        => Assert.Equal(expected, Peft.Generators.Rules.KroneckerRules.ParameterCount(inFeatures, outFeatures, rank, factor, decomposeBoth));

    [Theory]
    [InlineData(64, 32, 8, 768)]
    [InlineData(4096, 4096, 16, 131072)]
    public void LoRAParameterCount_IsRankTimesInPlusOut(long inFeatures, long outFeatures, int rank, long expected)
        => Assert.Equal(expected, Peft.Generators.Rules.LoRARules.ParameterCount(inFeatures, outFeatures, rank));

    [Theory]
    [InlineData(64, 32, 4, 768)]
    [InlineData(4096, 4096, 8, 131072)]
    [InlineData(1, 1, 1, 4)]
    public void LoHaParameterCount_IsTwoRankTimesInPlusOut(long inFeatures, long outFeatures, int rank, long expected)
    {
        Assert.Equal(expected, Peft.Generators.Rules.LoHaRules.ParameterCount(inFeatures, outFeatures, rank));
        Assert.Equal(expected, PeftModelValidator.CountAdapterParameters(TestAdapters.Create("LoHa", ("rank", rank)), new LayerInfo(LayerKind.Linear, inFeatures, outFeatures)));
    }

    [Theory]
    [InlineData(64, 32, 8, 768)]
    [InlineData(4096, 4096, 32, 262144)]
    [InlineData(1, 1, 1, 2)]
    public void HiRAParameterCount_IsRankTimesInPlusOut(long inFeatures, long outFeatures, int rank, long expected)
    {
        Assert.Equal(expected, Peft.Generators.Rules.HiRARules.ParameterCount(inFeatures, outFeatures, rank));
        Assert.Equal(expected, PeftModelValidator.CountAdapterParameters(TestAdapters.Create("HiRA", ("rank", rank)), new LayerInfo(LayerKind.Linear, inFeatures, outFeatures)));
    }
    [Theory]
    [InlineData(64, 32, 256, 288)]
    [InlineData(4096, 11008, 256, 11264)]
    [InlineData(1, 1, 1, 2)]
    public void VeRAParameterCount_IsRankPlusOut(long inFeatures, long outFeatures, int rank, long expected)
    {
        Assert.Equal(expected, Peft.Generators.Rules.VeRARules.ParameterCount(outFeatures, rank));
        Assert.Equal(expected, PeftModelValidator.CountAdapterParameters(TestAdapters.Create("VeRA", ("rank", rank)), new LayerInfo(LayerKind.Linear, inFeatures, outFeatures)));
    }

    [Theory]
    [InlineData(64, 32, 32, 64)]
    [InlineData(4096, 4096, 32, 528384)]
    [InlineData(10, 8, 3, 33)]
    [InlineData(1, 1, 1, 2)]
    public void RandLoRAParameterCount_IsRNPlusNMin(long inFeatures, long outFeatures, int rank, long expected)
    {
        // n = ⌈min(in, out) / r⌉ bases: randlora_lambda [r, n] and randlora_gamma [n, min].
        Assert.Equal(expected, Peft.Generators.Rules.RandLoRARules.ParameterCount(inFeatures, outFeatures, rank));
        Assert.Equal(expected, PeftModelValidator.CountAdapterParameters(TestAdapters.Create("RandLoRA", ("rank", rank)), new LayerInfo(LayerKind.Linear, inFeatures, outFeatures)));
    }

    [Theory]
    [InlineData(64, 32, 4, 10, 32, 120)]
    [InlineData(4096, 4096, 4, 256, 256, 32768)]
    [InlineData(8, 12, 2, 6, 4, 60)]
    public void VBLoRAParameterCount_IsTheLogitsRNTimesInPlusOutOverL(long inFeatures, long outFeatures, int rank, int numVectors, int vectorLength, long expected)
    {
        // vblora_logits_A [r, in/L, N] and vblora_logits_B [out/L, r, N]; the bank is counted once per adapter, not here.
        Assert.Equal(expected, Peft.Generators.Rules.VBLoRARules.ParameterCount(inFeatures, outFeatures, rank, numVectors, vectorLength));
        Assert.Equal(expected, PeftModelValidator.CountAdapterParameters(
            TestAdapters.Create("VBLoRA", ("rank", rank), ("numVectors", numVectors), ("vectorLength", vectorLength)), new LayerInfo(LayerKind.Linear, inFeatures, outFeatures)));
        Assert.Equal((long)numVectors * vectorLength, Peft.Generators.Rules.VBLoRARules.BankParameterCount(numVectors, vectorLength));
    }


    [Theory]
    [InlineData(1, 64L, 32L, true, 32L)]    // Linear
    [InlineData(4, 48L, 48L, true, 48L)]    // Norm
    [InlineData(1, 64L, 32L, false, 0L)]    // no bias: PEFT0024, nothing to count
    public void BitFitParameterCount_IsTheBiasSize(int layerKind, long inFeatures, long outFeatures, bool hasBias, long expected)
    {
        var kind = (LayerKind)layerKind;
        if (hasBias) Assert.Equal(expected, Peft.Generators.Rules.BitFitRules.ParameterCount(outFeatures));
        Assert.Equal(expected, PeftModelValidator.CountAdapterParameters(TestAdapters.Create("BitFit"), new LayerInfo(kind, inFeatures, outFeatures, HasBias: hasBias)));
    }

    [Theory]
    [InlineData(1, 64L, 32L, 64L)]   // Linear(64, 32): γ and β per output
    [InlineData(4, 48L, 48L, 96L)]   // LayerNorm(48)
    public void SSFParameterCount_IsTwicePerOutputFeature(int layerKind, long inFeatures, long outFeatures, long expected)
    {
        Assert.Equal(expected, Peft.Generators.Rules.SSFRules.ParameterCount(outFeatures));
        Assert.Equal(expected, PeftModelValidator.CountAdapterParameters(TestAdapters.Create("SSF"), new LayerInfo((LayerKind)layerKind, inFeatures, outFeatures)));
    }

    [Fact]
    public void CountAdapterParameters_NeedsAKnownLayerOfTheRightKind()
    {
        var lora = Adapter("LoRA", rank: 8);
        var prompt = Adapter("PromptTune", virtualTokens: 20);

        Assert.Equal(8 * (64 + 32), PeftModelValidator.CountAdapterParameters(lora, new LayerInfo(LayerKind.Linear, 64, 32)));
        Assert.Equal(20 * 512, PeftModelValidator.CountAdapterParameters(prompt, new LayerInfo(LayerKind.Embedding, 32000, 512)));
        Assert.Null(PeftModelValidator.CountAdapterParameters(lora, null));
        Assert.Null(PeftModelValidator.CountAdapterParameters(lora, new LayerInfo(LayerKind.Linear, 64, null)));
        Assert.Null(PeftModelValidator.CountAdapterParameters(lora, new LayerInfo(LayerKind.Embedding, 64, 32)));
        Assert.Null(PeftModelValidator.CountAdapterParameters(prompt, new LayerInfo(LayerKind.Linear, 64, 32)));
        Assert.Null(PeftModelValidator.CountAdapterParameters(Adapter("LoRA", rank: 0), new LayerInfo(LayerKind.Linear, 64, 32)));
    }

    [Fact]
    public void CountTrainableParameters_SkipsFrozenAndCountsUnknowns()
    {
        var linear = new LayerInfo(LayerKind.Linear, 64, 64);
        var model = Model(
            frozenClass: false,
            Member("q_proj", linear, frozen: false, Adapter("LoRA", rank: 8)),
            Member("k_proj", linear, frozen: true, Adapter("LoRA", rank: 8)),
            Member("v_proj", null, frozen: false, Adapter("LoRA", rank: 8)));

        Assert.Equal(new PeftModelValidator.TrainableParameterCount(1024, 1), PeftModelValidator.CountTrainableParameters(model));
        Assert.Equal(new PeftModelValidator.TrainableParameterCount(0, 0),
            PeftModelValidator.CountTrainableParameters(model with { FrozenClass = true }));
    }

    [Fact]
    public void CountTrainableParameters_LeavesInvalidAdaptersOutOfBothNumbers()
    {
        var model = Model(
            frozenClass: false,
            Member("q_proj", new LayerInfo(LayerKind.Linear, 64, 64), frozen: false, Adapter("LoRA", rank: 0)),
            Member("embed", new LayerInfo(LayerKind.Embedding, 100, 64), frozen: false, Adapter("LoRA", rank: 8)),
            Member("prompt", null, frozen: false, Adapter("PromptTune", virtualTokens: 0)),
            Member("v_proj", null, frozen: false, Adapter("LoRA", rank: 8)));

        Assert.Equal(new PeftModelValidator.TrainableParameterCount(0, 1), PeftModelValidator.CountTrainableParameters(model));
    }

    private static AdapterModel Adapter(string method, int rank = 8, int virtualTokens = 20)
        => TestAdapters.Create(method, ("rank", rank), ("virtualTokens", virtualTokens));

    private static MemberModel Member(string name, LayerInfo? layer, bool frozen, params AdapterModel[] adapters)
        => new(name, false, "global::TorchSharp.torch.nn.Module<global::TorchSharp.torch.Tensor, global::TorchSharp.torch.Tensor>",
            ComponentKind.Module, frozen, false, adapters.ToEquatableArray(), layer, false, true);

    private static PeftClassModel Model(bool frozenClass, params MemberModel[] members)
        => new(new HierarchyInfo("", new[] { new TypeDeclarationInfo("class", "M", "", 0) }.ToEquatableArray()),
            frozenClass, members.ToEquatableArray(), true, true);
}
