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
}
