using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0040 to PEFT0042: constant MeftConfig arguments that MeftConfig.Validate refuses at run time.</summary>
public class MeftDiagnosticsTests
{
    [Fact]
    public Task ValidAndNonConstantArgumentsReportNothing()
        => MeftConfigTest.VerifyAsync("""
            public static class Use
            {
                public static MeftConfig[] Configs(double lambda, int dim) =>
                [
                    new MeftConfig(),
                    new MeftConfig(MeftVariant.Meft2, X1Factor: 1, X2Factor: 0.1, AdapterBottleneckDim: 8, NumRevLayers: 0, HiddenAct: "relu", AdapterDropout: 0.1),
                    new MeftConfig(X1Factor: lambda, AdapterBottleneckDim: dim),
                ];
            }
            """);

    [Fact]
    public Task Meft3ZeroFactorsAndOutOfRangeValuesAreReported()
        => MeftConfigTest.VerifyAsync("""
            public static class Use
            {
                public static MeftConfig[] Configs() =>
                [
                    new MeftConfig({|#0:MeftVariant.Meft3|}),
                    new MeftConfig({|#1:X1Factor: 0|}, {|#2:X2Factor: double.PositiveInfinity|}),
                    new MeftConfig({|#3:AdapterBottleneckDim: 0|}, {|#4:NumRevLayers: -1|}, {|#5:HiddenAct: "swish"|}, {|#6:AdapterDropout: 1|}),
                ];
            }
            """,
            MeftConfigTest.Diagnostic("PEFT0040").WithLocation(0),
            MeftConfigTest.Diagnostic("PEFT0041").WithLocation(1).WithArguments("X1Factor", "0"),
            MeftConfigTest.Diagnostic("PEFT0041").WithLocation(2).WithArguments("X2Factor", "Infinity"),
            MeftConfigTest.Diagnostic("PEFT0042").WithLocation(3).WithArguments("AdapterBottleneckDim", "0", "the adapters need a bottleneck of at least 1 feature (the authors use 8)"),
            MeftConfigTest.Diagnostic("PEFT0042").WithLocation(4).WithArguments("NumRevLayers", "-1", "use 0 or more reversible blocks (null: every block)"),
            MeftConfigTest.Diagnostic("PEFT0042").WithLocation(5).WithArguments("HiddenAct", "\"swish\"", "use one of gelu, relu, silu, tanh"),
            MeftConfigTest.Diagnostic("PEFT0042").WithLocation(6).WithArguments("AdapterDropout", "1", "a dropout probability must be in [0, 1)"));
}

/// <summary>Runs <see cref="MeftConfigAnalyzer"/>.</summary>
internal sealed class MeftConfigTest : Microsoft.CodeAnalysis.CSharp.Testing.CSharpAnalyzerTest<MeftConfigAnalyzer, Microsoft.CodeAnalysis.Testing.DefaultVerifier>
{
    public MeftConfigTest()
    {
        ReferenceAssemblies = TestReferences.NoPackages;
        TestState.AdditionalReferences.AddRange(TestReferences.All);
        TestBehaviors |= Microsoft.CodeAnalysis.Testing.TestBehaviors.SkipGeneratedSourcesCheck;
    }

    public static Task VerifyAsync(string source, params Microsoft.CodeAnalysis.Testing.DiagnosticResult[] expected)
    {
        var test = new MeftConfigTest { TestCode = Usings + source };
        test.ExpectedDiagnostics.AddRange(expected);
        return test.RunAsync();
    }

    public static Microsoft.CodeAnalysis.Testing.DiagnosticResult Diagnostic(string id) =>
        new(Peft.Analyzers.Diagnostics.DiagnosticDescriptors.ById(id) ?? throw new ArgumentException("Unknown ID " + id, nameof(id)));
}
