using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Testing;

namespace Peft.Analyzers.Tests.Infrastructure;

/// <summary>Shared set-up of analyzer and code-fix tests.</summary>
internal static class PeftTestSetup
{
    /// <summary>The usings every test source starts with: TorchSharp exactly as users write it.</summary>
    public const string Usings = """
        using Peft;
        using TorchSharp;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        """;

    /// <summary>
    /// A partial module class <paramref name="name"/> with the given member declarations, a constructor that calls
    /// InitializePeft() and a trivial forward: the shape of a correct user class around the members under test.
    /// </summary>
    public static string Module(string members, string name = "Attention") => $$"""
        public sealed partial class {{name}} : Module<Tensor, Tensor>
        {
        {{members}}

            public {{name}}() : base(nameof({{name}})) => InitializePeft();

            public override Tensor forward(Tensor x) => x;
        }
        """;

    /// <summary>A global analyzer config that sets PeftMaxTrainableParameters, as MSBuild does for a project property.</summary>
    public static string BudgetConfig(string value) => $"""
        is_global = true
        build_property.PeftMaxTrainableParameters = {value}

        """;
}

/// <summary>Runs <see cref="PeftAttributeAnalyzer"/> on test sources (with the InitializePeft stub generator).</summary>
internal sealed class PeftAnalyzerTest : CSharpAnalyzerTest<PeftAttributeAnalyzer, DefaultVerifier>
{
    public PeftAnalyzerTest()
    {
        ReferenceAssemblies = TestReferences.NoPackages;
        TestState.AdditionalReferences.AddRange(TestReferences.All);
        TestBehaviors |= TestBehaviors.SkipGeneratedSourcesCheck;
    }

    /// <inheritdoc />
    protected override IEnumerable<Type> GetSourceGenerators() => new[] { typeof(InitializePeftStubGenerator) };

    /// <summary>Verifies that <paramref name="source"/> (after <see cref="PeftTestSetup.Usings"/>) produces exactly the markup and <paramref name="expected"/> diagnostics.</summary>
    public static Task VerifyAsync(string source, params DiagnosticResult[] expected)
        => VerifyAsync(source, budgetConfig: null, expected);

    /// <summary>As <see cref="VerifyAsync(string, DiagnosticResult[])"/>, with a global analyzer config.</summary>
    public static async Task VerifyAsync(string source, string? budgetConfig, params DiagnosticResult[] expected)
    {
        var test = new PeftAnalyzerTest { TestCode = PeftTestSetup.Usings + source };
        if (budgetConfig is not null) test.TestState.AnalyzerConfigFiles.Add(("/.globalconfig", budgetConfig));
        test.ExpectedDiagnostics.AddRange(expected);
        await test.RunAsync();
    }

    /// <summary>A diagnostic result for <paramref name="descriptorId"/> with the analyzer's descriptor.</summary>
    public static DiagnosticResult Diagnostic(string descriptorId)
        => new(Peft.Analyzers.Diagnostics.DiagnosticDescriptors.ById(descriptorId)
            ?? throw new ArgumentException("Unknown ID " + descriptorId, nameof(descriptorId)));
}

/// <summary>Runs <see cref="PeftAttributeAnalyzer"/> and a code fix on test sources.</summary>
internal sealed class PeftCodeFixTest<TCodeFix> : CSharpCodeFixTest<PeftAttributeAnalyzer, TCodeFix, DefaultVerifier>
    where TCodeFix : CodeFixProvider, new()
{
    public PeftCodeFixTest()
    {
        ReferenceAssemblies = TestReferences.NoPackages;
        TestState.AdditionalReferences.AddRange(TestReferences.All);
        TestBehaviors |= TestBehaviors.SkipGeneratedSourcesCheck;
    }

    /// <inheritdoc />
    protected override IEnumerable<Type> GetSourceGenerators() => new[] { typeof(InitializePeftStubGenerator) };

    /// <summary>Verifies that the fix turns <paramref name="source"/> into <paramref name="fixedSource"/> (both after the usings).</summary>
    public static async Task VerifyAsync(string source, string fixedSource, Action<PeftCodeFixTest<TCodeFix>>? configure = null)
    {
        var test = new PeftCodeFixTest<TCodeFix>
        {
            TestCode = PeftTestSetup.Usings + source,
            FixedCode = PeftTestSetup.Usings + fixedSource,
        };
        configure?.Invoke(test);
        await test.RunAsync();
    }
}
