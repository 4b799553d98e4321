using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0033 and PEFT0034: constant LoFiT arguments that LoFiTConfig.Validate and SelectHeads refuse at run time.</summary>
public class LoFiTDiagnosticsTests
{
    [Fact]
    public Task ValidAndNonConstantArgumentsReportNothing()
        => LoFiTTest.VerifyAsync("""
            public static class Use
            {
                public static LoFiTConfig[] Configs(double lambda) =>
                [
                    new LoFiTConfig(),
                    new LoFiTConfig(LoFiTComponents.Scale, L1Lambda: 5e-3, InitStd: 0),
                    new LoFiTConfig(L1Lambda: lambda, InitStd: -lambda),
                ];

                public static void Select(TorchSharp.torch.nn.Module model, double fraction, int k)
                {
                    model.SelectHeads(0.1);
                    model.SelectHeads(1.0);
                    model.SelectHeads(3);
                    model.SelectHeads(fraction);
                    model.SelectHeads(k);
                }
            }
            """);

    [Fact]
    public Task NegativeOrNonFiniteValuesAndEmptySelectionsAreReported()
        => LoFiTTest.VerifyAsync("""
            public static class Use
            {
                public static LoFiTConfig[] Configs() =>
                [
                    new LoFiTConfig(LoFiTComponents.Scale, {|#0:L1Lambda: -0.005|}),
                    new LoFiTConfig({|#1:InitStd: double.NaN|}),
                ];

                public static void Select(TorchSharp.torch.nn.Module model)
                {
                    model.SelectHeads({|#2:headFraction: 10.0|});
                    model.SelectHeads({|#3:0.0|}, "heads");
                    model.SelectHeads({|#4:topK: 0|});
                }
            }
            """,
            LoFiTTest.Diagnostic("PEFT0033").WithLocation(0).WithArguments("L1Lambda", "-0.005", "the L1 weight must be a finite number of at least 0 (the paper uses about 1e-3 to 5e-3)"),
            LoFiTTest.Diagnostic("PEFT0033").WithLocation(1).WithArguments("InitStd", "NaN", "the initialisation scale must be a finite number of at least 0 (the authors use 1e-3)"),
            LoFiTTest.Diagnostic("PEFT0034").WithLocation(2).WithArguments("headFraction", "10", "the share of heads kept must be in (0, 1] (the paper keeps 0.1)"),
            LoFiTTest.Diagnostic("PEFT0034").WithLocation(3).WithArguments("headFraction", "0", "the share of heads kept must be in (0, 1] (the paper keeps 0.1)"),
            LoFiTTest.Diagnostic("PEFT0034").WithLocation(4).WithArguments("topK", "0", "keep at least 1 head (at most the model's heads, checked at run time)"));
}

/// <summary>Runs <see cref="LoFiTAnalyzer"/>.</summary>
internal sealed class LoFiTTest : Microsoft.CodeAnalysis.CSharp.Testing.CSharpAnalyzerTest<LoFiTAnalyzer, Microsoft.CodeAnalysis.Testing.DefaultVerifier>
{
    public LoFiTTest()
    {
        ReferenceAssemblies = TestReferences.NoPackages;
        TestState.AdditionalReferences.AddRange(TestReferences.All);
        TestBehaviors |= Microsoft.CodeAnalysis.Testing.TestBehaviors.SkipGeneratedSourcesCheck;
    }

    public static Task VerifyAsync(string source, params Microsoft.CodeAnalysis.Testing.DiagnosticResult[] expected)
    {
        var test = new LoFiTTest { TestCode = Usings + source };
        test.ExpectedDiagnostics.AddRange(expected);
        return test.RunAsync();
    }

    public static Microsoft.CodeAnalysis.Testing.DiagnosticResult Diagnostic(string id) =>
        new(Peft.Analyzers.Diagnostics.DiagnosticDescriptors.ById(id) ?? throw new ArgumentException("Unknown ID " + id, nameof(id)));
}
