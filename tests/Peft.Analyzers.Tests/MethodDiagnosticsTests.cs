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
}
