using Peft.Analyzers.Tests.Infrastructure;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0035–PEFT0037: constant bottleneck adapter (and Compacter) configuration arguments the run time would refuse.</summary>
public class BottleneckDiagnosticsTests
{
    [Fact]
    public Task OutOfRangeArguments_ReportPEFT0035()
        => BottleneckConfigTest.VerifyAsync("""
            public static class Configs
            {
                public static BottleneckConfig Zero() => new BottleneckConfig({|#0:ReductionFactor: 0|});
                public static BottleneckConfig Dim() => BottleneckConfig.Compacter() with { {|#1:PhmDim = 0|}, {|#2:PhmInitRange = -1e-4|} };
                public static BottleneckConfig Rank() => new BottleneckConfig(16, "relu", {|#3:PhmRank: 0|});
                public static BottleneckConfig Fine() => BottleneckConfig.Compacter() with { ReductionFactor = 2, PhmDim = 2 };
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0035").WithLocation(0).WithArguments("reduction_factor", "0", "must be a positive number (hidden size over bottleneck size, e.g. 16)"),
            PeftAnalyzerTest.Diagnostic("PEFT0035").WithLocation(1).WithArguments("phm_dim", "0", "must be at least 1 (the number of Kronecker terms, 4 in Compacter)"),
            PeftAnalyzerTest.Diagnostic("PEFT0035").WithLocation(2).WithArguments("phm_init_range", "-0.0001", "must be a positive finite number (the PHM rule's standard deviation, 1e-4 in Compacter)"),
            PeftAnalyzerTest.Diagnostic("PEFT0035").WithLocation(3).WithArguments("phm_rank", "0", "must be at least 1 (the rank of each W_i = W_left_i W_right_i, 1 in Compacter)"));

    [Fact]
    public Task UnknownActivationAndInit_ReportPEFT0036()
        => BottleneckConfigTest.VerifyAsync("""
            public static class Configs
            {
                public static BottleneckConfig Activation() => new BottleneckConfig(16, {|#0:"softsign"|});
                public static BottleneckConfig Init() => BottleneckConfig.Houlsby() with { {|#1:InitWeights = "houlsby"|} };
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0036").WithLocation(0).WithArguments("non_linearity", "softsign", "relu, swish, silu, gelu, tanh"),
            PeftAnalyzerTest.Diagnostic("PEFT0036").WithLocation(1).WithArguments("init_weights", "houlsby", "mam_adapter (zero up projection, identity at init), bert"));

    [Fact]
    public Task ArgumentsThatDoNotGoTogether_ReportPEFT0037_AndUnknownValuesAreLeftToTheRunTime()
        => BottleneckConfigTest.VerifyAsync("""
            public static class Configs
            {
                public static BottleneckConfig Nothing() => BottleneckConfig.Pfeiffer() with { {|#0:OutputAdapter = false|} };
                public static BottleneckConfig Mam() => BottleneckConfig.Compacter() with { {|#1:InitWeights = BottleneckConfig.MamAdapterInit|} };
                public static BottleneckConfig Phm() => new BottleneckConfig(32, "gelu", {|#2:PhmLayer: true|});
                public static BottleneckConfig Unknown(BottleneckConfig c, int n) => c with { OutputAdapter = false, PhmDim = n };
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0037").WithLocation(0).WithArguments("mh_adapter and output_adapter are both false, so nothing would be inserted; set at least one"),
            PeftAnalyzerTest.Diagnostic("PEFT0037").WithLocation(1).WithArguments(MamWithPhm),
            PeftAnalyzerTest.Diagnostic("PEFT0037").WithLocation(2).WithArguments(MamWithPhm));

    private const string MamWithPhm = "init_weights = \"mam_adapter\" with phm_layer = true: PHM layers initialise themselves (use init_weights = \"bert\", as BottleneckConfig.Compacter() does)";
}

/// <summary>Runs <see cref="BottleneckConfigAnalyzer"/> alone.</summary>
internal sealed class BottleneckConfigTest : Microsoft.CodeAnalysis.CSharp.Testing.CSharpAnalyzerTest<BottleneckConfigAnalyzer, Microsoft.CodeAnalysis.Testing.DefaultVerifier>
{
    public BottleneckConfigTest()
    {
        ReferenceAssemblies = TestReferences.NoPackages;
        TestState.AdditionalReferences.AddRange(TestReferences.All);
    }

    public static Task VerifyAsync(string source, params Microsoft.CodeAnalysis.Testing.DiagnosticResult[] expected)
    {
        var test = new BottleneckConfigTest { TestCode = PeftTestSetup.Usings + source };
        test.ExpectedDiagnostics.AddRange(expected);
        return test.RunAsync();
    }
}
