using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0001, PEFT0002, PEFT0003, PEFT0014: attribute values that can never work.</summary>
public class ValueDiagnosticsTests
{
    [Fact]
    public Task Rank0_OnLoRA_ReportsPEFT0001OnTheRankArgument()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [LoRA({|PEFT0001:rank: 0|}, alpha: 16)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            """));

    [Fact]
    public Task NegativeRank_OnKronecker_ReportsPEFT0001WithMessage()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [Kronecker({|#0:-2|})] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0001").WithLocation(0).WithArguments("Kronecker", "-2"));

    [Fact]
    public Task Rank1_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [LoRA(rank: 1)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [Kronecker(1, Name = "lokr")] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
            """));

    [Fact]
    public Task ZeroAlpha_ReportsPEFT0002OnTheAlphaArgument()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [LoRA(8, {|PEFT0002:0.0|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            """));

    [Fact]
    public Task NaNAndInfiniteAlpha_ReportPEFT0002()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(8, {|#0:alpha: double.NaN|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                [Kronecker(4, {|#1:double.PositiveInfinity|}, Name = "lokr")] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                [LoRA(8, {|#2:alpha: -1|}, Name = "negative")] private Module<Tensor, Tensor> k_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0002").WithLocation(0).WithArguments("LoRA", "NaN"),
            PeftAnalyzerTest.Diagnostic("PEFT0002").WithLocation(1).WithArguments("Kronecker", "Infinity"),
            PeftAnalyzerTest.Diagnostic("PEFT0002").WithLocation(2).WithArguments("LoRA", "-1"));

    [Fact]
    public Task TinyPositiveAlpha_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [LoRA(8, alpha: 1e-6)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            """));

    [Fact]
    public Task DropoutOfOneOrNegative_ReportsPEFT0003()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(8, 16, {|#0:1.0|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                [LoRA(8, 16, {|#1:dropout: -0.1|})] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0003").WithLocation(0).WithArguments("LoRA", "1"),
            PeftAnalyzerTest.Diagnostic("PEFT0003").WithLocation(1).WithArguments("LoRA", "-0.1"));

    [Fact]
    public Task DropoutInRange_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [LoRA(8, 16, 0.0)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [LoRA(8, 16, dropout: 0.99)] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
            """));

    [Fact]
    public Task ZeroVirtualTokens_ReportsPEFT0014()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [PromptTune({|#0:virtualTokens: 0|})] private Module<Tensor, Tensor> embed = Embedding(1000, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0014").WithLocation(0).WithArguments("PromptTune", "0"));

    [Fact]
    public Task ZeroVirtualTokensOfPTuning_ReportsPEFT0014NamingPTuning()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [PTuning({|#0:virtualTokens: 0|})] private Module<Tensor, Tensor> embed = Embedding(1000, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0014").WithLocation(0).WithArguments("PTuning", "0"));

    [Fact]
    public Task OneVirtualTokenAndTheDefault_AreAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [PromptTune(1)] private Module<Tensor, Tensor> embed = Embedding(1000, 64);
            [PromptTune(Name = "other")] private Module<Tensor, Tensor> embed2 = Embedding(1000, 64);
            """));

    [Fact]
    public Task PragmaWarningDisable_SuppressesTheDiagnosticAtItsLocation()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            #pragma warning disable PEFT0001
                [LoRA(rank: 0)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            #pragma warning restore PEFT0001
            """));

    [Fact]
    public Task SuppressMessageAttribute_SuppressesTheDiagnosticOnTheMember()
        => PeftAnalyzerTest.VerifyAsync(Module("""
                [System.Diagnostics.CodeAnalysis.SuppressMessage("Peft", "PEFT0001", Justification = "test")]
                [LoRA(rank: 0)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            """));
}
