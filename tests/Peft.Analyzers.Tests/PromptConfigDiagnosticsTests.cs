using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0049: constant PrefixTuningConfig and AdaptionPromptConfig fields that their Validate refuses at run time.</summary>
public class PromptConfigDiagnosticsTests
{
    [Fact]
    public Task ValidAndNonConstantFieldsReportNothing()
        => PromptConfigTest.VerifyAsync("""
            public static class Use
            {
                public static object[] Configs(int tokens, bool projection) =>
                [
                    new PrefixTuningConfig(),
                    new PrefixTuningConfig(30, Projection: true, EncoderHiddenSize: 800),
                    new PrefixTuningConfig(tokens, Projection: projection, EncoderHiddenSize: 16),
                    PrefixTuningConfig.Mam() with { VirtualTokens = 10, EncoderHiddenSize = 64 },
                    new AdaptionPromptConfig(10, 30),
                    new AdaptionPromptConfig(tokens, tokens),
                ];
            }
            """);

    [Fact]
    public Task OutOfRangeFieldsAreReportedOnTheArgument()
        => PromptConfigTest.VerifyAsync("""
            public static class Use
            {
                public static object[] Configs() =>
                [
                    new PrefixTuningConfig({|#0:0|}),
                    new PrefixTuningConfig({|#1:VirtualTokens: 70000|}, Projection: true, {|#2:EncoderHiddenSize: 0|}),
                    new PrefixTuningConfig(20, {|#3:EncoderHiddenSize: 64|}),
                    PrefixTuningConfig.Mam() with { {|#4:VirtualTokens = -1|} },
                    new AdaptionPromptConfig({|#5:0|}, {|#6:0|}),
                    new AdaptionPromptConfig({|#7:AdapterLen: 5000|}, AdapterLayers: 2),
                ];
            }
            """,
            PromptConfigTest.Diagnostic("PEFT0049").WithLocation(0).WithArguments("PrefixTuningConfig", "VirtualTokens", "0", "use 1 to 65536 prefix positions per layer (num_virtual_tokens; PEFT's examples use 20 to 30)"),
            PromptConfigTest.Diagnostic("PEFT0049").WithLocation(1).WithArguments("PrefixTuningConfig", "VirtualTokens", "70000", "use 1 to 65536 prefix positions per layer (num_virtual_tokens; PEFT's examples use 20 to 30)"),
            PromptConfigTest.Diagnostic("PEFT0049").WithLocation(2).WithArguments("PrefixTuningConfig", "EncoderHiddenSize", "0", "use a positive MLP width, or null for token_dim"),
            PromptConfigTest.Diagnostic("PEFT0049").WithLocation(3).WithArguments("PrefixTuningConfig", "EncoderHiddenSize", "64", "the width belongs to the MLP reparameterisation; set Projection: true or drop EncoderHiddenSize"),
            PromptConfigTest.Diagnostic("PEFT0049").WithLocation(4).WithArguments("PrefixTuningConfig", "VirtualTokens", "-1", "use 1 to 65536 prefix positions per layer (num_virtual_tokens; PEFT's examples use 20 to 30)"),
            PromptConfigTest.Diagnostic("PEFT0049").WithLocation(5).WithArguments("AdaptionPromptConfig", "AdapterLen", "0", "use 1 to 4096 adapter tokens per attention (adapter_len; LLaMA-Adapter uses 10)"),
            PromptConfigTest.Diagnostic("PEFT0049").WithLocation(6).WithArguments("AdaptionPromptConfig", "AdapterLayers", "0", "use at least 1 (adapter_layers: how many blocks from the top get a prompt)"),
            PromptConfigTest.Diagnostic("PEFT0049").WithLocation(7).WithArguments("AdaptionPromptConfig", "AdapterLen", "5000", "use 1 to 4096 adapter tokens per attention (adapter_len; LLaMA-Adapter uses 10)"));

    [Fact]
    public void TheAnalyzersLimitsAreTheRuntimes()
    {
        Assert.Equal(Peft.PrefixTuningConfig.MaxVirtualTokens, 1 << 16);
        Assert.Equal(Peft.AdaptionPromptConfig.MaxAdapterLen, 4096);
    }
}

/// <summary>Runs <see cref="PromptConfigAnalyzer"/>.</summary>
internal sealed class PromptConfigTest : Microsoft.CodeAnalysis.CSharp.Testing.CSharpAnalyzerTest<PromptConfigAnalyzer, Microsoft.CodeAnalysis.Testing.DefaultVerifier>
{
    public PromptConfigTest()
    {
        ReferenceAssemblies = TestReferences.NoPackages;
        TestState.AdditionalReferences.AddRange(TestReferences.All);
        TestBehaviors |= Microsoft.CodeAnalysis.Testing.TestBehaviors.SkipGeneratedSourcesCheck;
    }

    public static Task VerifyAsync(string source, params Microsoft.CodeAnalysis.Testing.DiagnosticResult[] expected)
    {
        var test = new PromptConfigTest { TestCode = Usings + source };
        test.ExpectedDiagnostics.AddRange(expected);
        return test.RunAsync();
    }

    public static Microsoft.CodeAnalysis.Testing.DiagnosticResult Diagnostic(string id) =>
        new(Peft.Analyzers.Diagnostics.DiagnosticDescriptors.ById(id) ?? throw new ArgumentException("Unknown ID " + id, nameof(id)));
}
