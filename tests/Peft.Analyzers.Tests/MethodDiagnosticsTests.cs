using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>Diagnostics a method declares in its own folder (PEFT0019 onwards).</summary>
public class MethodDiagnosticsTests
{
    [Fact]
    public Task IA3WithRandomInit_ReportsPEFT0019OnTheInitWeightsArgument()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [IA3({|#0:InitWeights = false|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0019").WithLocation(0).WithArguments("q_proj"));

    [Fact]
    public Task IA3WithDefaultInit_AndFeedForward_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [IA3] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [IA3(FeedForward = true, InitWeights = true)] private Module<Tensor, Tensor> down_proj = Linear(64, 32);
            """));

    [Fact]
    public Task IA3OnAnEmbedding_ReportsPEFT0006()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [{|PEFT0006:IA3|}] private Module<Tensor, Tensor> embed = Embedding(100, 64);
            """));

    [Fact]
    public Task LNTuningOnANorm_IsAccepted_AndOnALinearLayer_ReportsPEFT0006()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [LNTuning] private Module<Tensor, Tensor> input_layernorm = LayerNorm(64);
            [LNTuning(Name = "nobias")] private Module<Tensor, Tensor> ln_f = LayerNorm(64, bias: false);
            [{|PEFT0006:LNTuning|}] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            """));

    [Fact]
    public Task LNTuning_CountsTheNormsWeightAndBias_InTheBudget()
        // LayerNorm(64): weight and bias, 128; LayerNorm(64, bias: false): 64. 192 is one over a budget of 191.
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class {|#0:Block|} : Module<Tensor, Tensor>
            {
                [LNTuning] private Module<Tensor, Tensor> ln_1 = LayerNorm(64);
                [LNTuning] private Module<Tensor, Tensor> ln_2 = LayerNorm(64, bias: false);

                public Block() : base(nameof(Block)) => InitializePeft();

                public override Tensor forward(Tensor x) => ln_2.call(ln_1.call(x));
            }
            """,
            BudgetConfig("191"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0).WithArguments("Block", "192", "191", "0"));

    [Fact]
    public Task LNTuningOnANormWithoutAffineParameters_ReportsPEFT0020OnTheAttribute()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [{|#0:LNTuning|}] private Module<Tensor, Tensor> ln_1 = LayerNorm(64, elementwise_affine: false);
                [LNTuning] private Module<Tensor, Tensor> ln_2 = LayerNorm(64, elementwise_affine: true);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0020").WithLocation(0).WithArguments("ln_1"));

    [Fact]
    public Task BitFitOnALayerWithoutABias_ReportsPEFT0024OnTheAttribute()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [{|#0:BitFit|}] private Module<Tensor, Tensor> q_proj = Linear(64, 64, hasBias: false);
                [{|#1:BitFit|}] private Module<Tensor, Tensor> ln_1 = LayerNorm(64, bias: false);
                [BitFit] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                [BitFit] private Module<Tensor, Tensor> ln_2 = LayerNorm(64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0024").WithLocation(0).WithArguments("q_proj"),
            PeftAnalyzerTest.Diagnostic("PEFT0024").WithLocation(1).WithArguments("ln_1"));

    [Fact]
    public Task BitFitOnAnEmbedding_ReportsTheLayerKindRule()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [{|#0:BitFit|}] private Module<Tensor, Tensor> wte = Embedding(100, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0006").WithLocation(0).WithArguments("BitFit", "wte", "a Linear layer or a LayerNorm (or a norm implementing IAdaptableNorm)", "it is built with Embedding(...)"));

    [Fact]
    public Task SSFOnALayerWithoutABias_WarnsPEFT0025_AndIsAcceptedOnLinearsAndNorms()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [{|#0:SSF|}] private Module<Tensor, Tensor> q_proj = Linear(64, 64, hasBias: false);
                [{|#1:SSF|}] private Module<Tensor, Tensor> ln_1 = LayerNorm(64, bias: false);
                [SSF] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                [SSF] private Module<Tensor, Tensor> ln_2 = LayerNorm(64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0025").WithLocation(0).WithArguments("q_proj"),
            PeftAnalyzerTest.Diagnostic("PEFT0025").WithLocation(1).WithArguments("ln_1"));

    [Fact]
    public Task LoHaWithDefaultsAndDropouts_IsAccepted_AndARankAboveMinInOut_IsNotPEFT0004()
        // The Hadamard product of two rank-r products has rank up to r², so PEFT0004 (LoRA's rank <= min(in, out)) does not apply.
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [LoHa] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [LoHa(4, 8, RankDropout = 0.1, ModuleDropout = 0.05)] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
            [LoHa(rank: 48)] private Module<Tensor, Tensor> k_proj = Linear(64, 32);
            """));

    [Fact]
    public Task LoHaWithBadValues_ReportsTheSharedRankAlphaAndDropoutIdsOnTheirArguments()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoHa({|#0:rank: 0|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                [LoHa(4, {|#1:double.NaN|})] private Module<Tensor, Tensor> k_proj = Linear(64, 64);
                [LoHa(4, {|#2:RankDropout = 1.0|})] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                [LoHa(4, {|#3:ModuleDropout = -0.1|})] private Module<Tensor, Tensor> o_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0001").WithLocation(0).WithArguments("LoHa", "0"),
            PeftAnalyzerTest.Diagnostic("PEFT0002").WithLocation(1).WithArguments("LoHa", "NaN"),
            PeftAnalyzerTest.Diagnostic("PEFT0003").WithLocation(2).WithArguments("LoHa", "1"),
            PeftAnalyzerTest.Diagnostic("PEFT0003").WithLocation(3).WithArguments("LoHa", "-0.1"));

    [Fact]
    public Task LoHaOnAnEmbedding_ReportsPEFT0006()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [{|PEFT0006:LoHa(4)|}] private Module<Tensor, Tensor> embed = Embedding(100, 64);
            """));

    [Fact]
    public Task LoHa_CountsTwoRTimesInPlusOut_InTheBudget()
        // LoHa r=4 on Linear(64, 32): 2 * 4 * (64 + 32) = 768; r=2 on Linear(32, 32): 2 * 2 * 64 = 256. 1,024 is one over 1,023.
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class {|#0:Block|} : Module<Tensor, Tensor>
            {
                [LoHa(4)] private Module<Tensor, Tensor> up = Linear(64, 32);
                [LoHa(2)] private Module<Tensor, Tensor> down = Linear(32, 32);

                public Block() : base(nameof(Block)) => InitializePeft();

                public override Tensor forward(Tensor x) => down.call(up.call(x));
            }
            """,
            BudgetConfig("1023"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0).WithArguments("Block", "1,024", "1,023", "0"));

    [Fact]
    public Task HiRAWithDefaultsAndDropout_IsAccepted()
        // The default rank 32 fits Linear(64, 64); rank = min(in, out) is still accepted.
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [HiRA] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [HiRA(4, 0.1)] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
            [HiRA(rank: 32, Name = "other")] private Module<Tensor, Tensor> k_proj = Linear(64, 32);
            """));

    [Fact]
    public Task HiRAWithBadValues_ReportsTheSharedRankDropoutAndRankTooLargeIdsOnTheirArguments()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [HiRA({|#0:rank: 0|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                [HiRA(4, {|#1:1.0|})] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                [HiRA({|#2:rank: 48|})] private Module<Tensor, Tensor> k_proj = Linear(64, 32);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0001").WithLocation(0).WithArguments("HiRA", "0"),
            PeftAnalyzerTest.Diagnostic("PEFT0003").WithLocation(1).WithArguments("HiRA", "1"),
            PeftAnalyzerTest.Diagnostic("PEFT0004").WithLocation(2).WithArguments("HiRA", "48", "k_proj", "64", "32"));

    [Fact]
    public Task HiRAOnAnEmbedding_ReportsPEFT0006()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [{|PEFT0006:HiRA(4)|}] private Module<Tensor, Tensor> embed = Embedding(100, 64);
            """));

    [Fact]
    public Task HiRA_CountsRTimesInPlusOut_InTheBudget()
        // HiRA r=8 on Linear(64, 32): 8 * (64 + 32) = 768; r=4 on Linear(32, 32): 4 * 64 = 256. 1,024 is one over 1,023.
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class {|#0:Block|} : Module<Tensor, Tensor>
            {
                [HiRA(8)] private Module<Tensor, Tensor> up = Linear(64, 32);
                [HiRA(4)] private Module<Tensor, Tensor> down = Linear(32, 32);

                public Block() : base(nameof(Block)) => InitializePeft();

                public override Tensor forward(Tensor x) => down.call(up.call(x));
            }
            """,
            BudgetConfig("1023"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0).WithArguments("Block", "1,024", "1,023", "0"));

    [Fact]
    public Task VeRAWithDefaultsAndSettings_IsAccepted_AndARankAboveMinInOut_IsNotPEFT0004()
        // The projections are shared and sized by the largest layer; PEFT's default r = 256 exceeds many layers.
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [VeRA] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [VeRA(64, Dropout = 0.1, DInitial = 1.0, ProjectionPrngKey = 5, SaveProjection = false)] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
            """));

    [Fact]
    public Task VeRAWithBadValues_ReportsTheSharedRankAndDropoutIdsOnTheirArguments()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [VeRA({|#0:rank: 0|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                [VeRA(4, {|#1:Dropout = 1.0|})] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0001").WithLocation(0).WithArguments("VeRA", "0"),
            PeftAnalyzerTest.Diagnostic("PEFT0003").WithLocation(1).WithArguments("VeRA", "1"));

    [Fact]
    public Task VeRAOnAnEmbedding_ReportsPEFT0006()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [{|PEFT0006:VeRA(4)|}] private Module<Tensor, Tensor> embed = Embedding(100, 64);
            """));

    [Fact]
    public Task VeRA_CountsROut_InTheBudget()
        // VeRA r=256 on Linear(64, 32): 256 + 32 = 288; r=8 on Linear(32, 16): 8 + 16 = 24. 312 is one over 311.
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class {|#0:Block|} : Module<Tensor, Tensor>
            {
                [VeRA] private Module<Tensor, Tensor> up = Linear(64, 32);
                [VeRA(8)] private Module<Tensor, Tensor> down = Linear(32, 16);

                public Block() : base(nameof(Block)) => InitializePeft();

                public override Tensor forward(Tensor x) => down.call(up.call(x));
            }
            """,
            BudgetConfig("311"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0).WithArguments("Block", "312", "311", "0"));

    [Fact]
    public Task RandLoRAWithDefaultsAndSettings_IsAccepted_AndARankAboveMinInOut_IsNotPEFT0004()
        // A rank above min(in, out) gives one basis, which PEFT accepts.
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [RandLoRA] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
            [RandLoRA(8, 160, Dropout = 0.1, ProjectionPrngKey = 5, SaveProjection = false, Sparse = true, VerySparse = true)] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
            """));

    [Fact]
    public Task RandLoRAWithBadValues_ReportsTheSharedRankAlphaAndDropoutIdsOnTheirArguments()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [RandLoRA({|#0:rank: 0|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                [RandLoRA(4, {|#1:alpha: 0|})] private Module<Tensor, Tensor> k_proj = Linear(64, 64);
                [RandLoRA(4, 80, {|#2:Dropout = 1.0|})] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0001").WithLocation(0).WithArguments("RandLoRA", "0"),
            PeftAnalyzerTest.Diagnostic("PEFT0002").WithLocation(1).WithArguments("RandLoRA", "0"),
            PeftAnalyzerTest.Diagnostic("PEFT0003").WithLocation(2).WithArguments("RandLoRA", "1"));

    [Fact]
    public Task RandLoRAOnAnEmbedding_ReportsPEFT0006()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [{|PEFT0006:RandLoRA(4)|}] private Module<Tensor, Tensor> embed = Embedding(100, 64);
            """));

    [Fact]
    public Task RandLoRA_CountsRNPlusNMin_InTheBudget()
        // r=32 on Linear(64, 32): n = 1, 32 + 32 = 64; r=8 on Linear(32, 16): n = 2, 16 + 2·16 = 48. 112 is one over 111.
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class {|#0:Block|} : Module<Tensor, Tensor>
            {
                [RandLoRA] private Module<Tensor, Tensor> up = Linear(64, 32);
                [RandLoRA(8)] private Module<Tensor, Tensor> down = Linear(32, 16);

                public Block() : base(nameof(Block)) => InitializePeft();

                public override Tensor forward(Tensor x) => down.call(up.call(x));
            }
            """,
            BudgetConfig("111"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0).WithArguments("Block", "112", "111", "0"));

    [Fact]
    public Task VBLoRAWithDefaultsAndSettings_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [VBLoRA] private Module<Tensor, Tensor> q_proj = Linear(512, 256);
            [VBLoRA(8, 90, 64, TopK = 3, Dropout = 0.1, InitVectorBankBound = 0.01, InitLogitsStd = 0.5)] private Module<Tensor, Tensor> v_proj = Linear(64, 192);
            """));

    [Fact]
    public Task VBLoRAWithBadValues_ReportsRankDropoutVectorLengthAndTopKOnTheirArguments()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [VBLoRA({|#0:0|}, 6, 4)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                [VBLoRA(2, 6, 4, {|#1:Dropout = 1.0|})] private Module<Tensor, Tensor> k_proj = Linear(64, 64);
                [VBLoRA(2, 6, {|#2:vectorLength: 48|})] private Module<Tensor, Tensor> v_proj = Linear(64, 96);
                [VBLoRA(2, 6, 4, {|#3:TopK = 7|})] private Module<Tensor, Tensor> o_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0001").WithLocation(0).WithArguments("VBLoRA", "0"),
            PeftAnalyzerTest.Diagnostic("PEFT0003").WithLocation(1).WithArguments("VBLoRA", "1"),
            PeftAnalyzerTest.Diagnostic("PEFT0022").WithLocation(2).WithArguments("v_proj", "48", "64", "96"),
            PeftAnalyzerTest.Diagnostic("PEFT0023").WithLocation(3).WithArguments("o_proj", "7", "6"));

    [Fact]
    public Task VBLoRAOnAnEmbedding_ReportsPEFT0006()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [{|PEFT0006:VBLoRA(4, 6, 4)|}] private Module<Tensor, Tensor> embed = Embedding(100, 64);
            """));

    [Fact]
    public Task VBLoRA_CountsTheLogitsPerLayerAndTheBankOncePerAdapter_InTheBudget()
        // L = 32, N = 10, r = 4: Linear(64, 32) has 4·10·(2 + 1) = 120 logits, Linear(32, 64) 120 more; the bank 10·32 = 320
        // once for adapter "default"; adapter "other" on down adds 120 and its own bank 320. 1000 is one over 999.
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class {|#0:Block|} : Module<Tensor, Tensor>
            {
                [VBLoRA(4, 10, 32)] private Module<Tensor, Tensor> up = Linear(64, 32);
                [VBLoRA(4, 10, 32)] [VBLoRA(4, 10, 32, Name = "other")] private Module<Tensor, Tensor> down = Linear(32, 64);

                public Block() : base(nameof(Block)) => InitializePeft();

                public override Tensor forward(Tensor x) => down.call(up.call(x));
            }
            """,
            BudgetConfig("999"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0).WithArguments("Block", "1,000", "999", "0"));
}
