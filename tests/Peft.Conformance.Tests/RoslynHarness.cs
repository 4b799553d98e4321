using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Analyzers;
using Peft.Generators;

namespace Peft.Conformance.Tests;

/// <summary>Compiles a small annotated class against TorchSharp and Peft.Runtime, runs the generator and the analyzers.</summary>
internal static class RoslynHarness
{
    private static readonly Lazy<ImmutableArray<MetadataReference>> s_references = new(() =>
    {
        string runtime = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!)
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Where(p => string.Equals(Path.GetDirectoryName(p), runtime, StringComparison.Ordinal))
            .Append(typeof(TorchSharp.torch).Assembly.Location)
            .Append(typeof(PeftMethod).Assembly.Location);
        return paths.Distinct(StringComparer.Ordinal).Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToImmutableArray();
    });

    /// <summary>A partial module with one member <c>m</c> carrying <paramref name="attribute"/>, built with <paramref name="layer"/>.</summary>
    public static string Source(string attribute, string layer) => $$"""
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace Conformance
        {
            /// <summary>One adapted member.</summary>
            public sealed partial class Row : Module<Tensor, Tensor>
            {
                {{attribute}} private Module<Tensor, Tensor> m = {{layer}};

                /// <summary>Builds it.</summary>
                public Row() : base("Row") => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => m.call(x);
            }
        }
        """;

    public static CSharpCompilation Compile(string source)
        => CSharpCompilation.Create("Conformance", new[] { CSharpSyntaxTree.ParseText(source, new CSharpParseOptions(LanguageVersion.Latest)) },
            s_references.Value, new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));

    /// <summary>The generated file, after checking the output compiles without errors.</summary>
    public static string Generate(string source)
    {
        var driver = CSharpGeneratorDriver.Create(new PeftGenerator()).RunGeneratorsAndUpdateCompilation(Compile(source), out var output, out var diagnostics);
        Assert.Empty(diagnostics);
        var errors = output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(errors.Count == 0, string.Join(Environment.NewLine, errors));
        return Assert.Single(driver.GetRunResult().GeneratedTrees).ToString();
    }

    /// <summary>The IDs the analyzers report (errors and warnings) on the source.</summary>
    public static async Task<string[]> DiagnosticIds(string source)
    {
        var analyzers = ImmutableArray.Create<DiagnosticAnalyzer>(new PeftAttributeAnalyzer());
        var diagnostics = await Compile(source).WithAnalyzers(analyzers).GetAnalyzerDiagnosticsAsync();
        return diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning).Select(d => d.Id).Distinct().OrderBy(i => i, StringComparer.Ordinal).ToArray();
    }
}
