using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Generators;

namespace Peft.Generators.Tests;

/// <summary>Compilations against TorchSharp + Peft.Runtime + the running net10 runtime, and generator runs over them.</summary>
internal static class TestCompilation
{
    /// <summary>Latest C#, with documentation comments checked (so a missing XML doc is a CS1591 warning).</summary>
    public static readonly CSharpParseOptions ParseOptions =
        new CSharpParseOptions(LanguageVersion.Latest, DocumentationMode.Diagnose);

    /// <summary>A library with nullable enabled and every warning level on, as a user's project builds.</summary>
    public static readonly CSharpCompilationOptions Options =
        new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable)
            .WithWarningLevel(9999);

    private static readonly Lazy<ImmutableArray<MetadataReference>> s_references = new(LoadReferences);

    /// <summary>The net10 runtime's trusted platform assemblies plus TorchSharp.dll and Peft.Runtime.dll.</summary>
    public static ImmutableArray<MetadataReference> References => s_references.Value;

    public static CSharpCompilation Create(params string[] sources)
        => CSharpCompilation.Create(
            "PeftGeneratorTestInput",
            sources.Select((s, i) => Parse(s, $"Input{i}.cs")),
            References,
            Options);

    public static SyntaxTree Parse(string source, string path) => CSharpSyntaxTree.ParseText(source, ParseOptions, path);

    /// <summary>A driver for <see cref="PeftGenerator"/> that records every named step.</summary>
    public static GeneratorDriver CreateDriver(AnalyzerConfigOptionsProvider? options = null)
        => CSharpGeneratorDriver.Create(
            new[] { new PeftGenerator().AsSourceGenerator() },
            additionalTexts: null,
            parseOptions: ParseOptions,
            optionsProvider: options,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    /// <summary>Runs the generator once; fails if it threw or reported anything.</summary>
    public static GeneratorRun Run(CSharpCompilation compilation, AnalyzerConfigOptionsProvider? options = null)
    {
        var driver = CreateDriver(options).RunGeneratorsAndUpdateCompilation(compilation, out var output, out var diagnostics);
        var result = driver.GetRunResult();
        Assert.Null(result.Results[0].Exception);
        Assert.Empty(diagnostics);
        return new GeneratorRun(driver, result, output);
    }

    /// <summary>Every diagnostic of warning or error severity (what TreatWarningsAsErrors would fail on).</summary>
    public static ImmutableArray<Diagnostic> WarningsAndErrors(Compilation compilation)
        => compilation.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).ToImmutableArray();

    public static string Describe(IEnumerable<Diagnostic> diagnostics)
        => string.Join(Environment.NewLine, diagnostics.Select(d => d.ToString()));

    private static ImmutableArray<MetadataReference> LoadReferences()
    {
        string runtimeDirectory = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!)
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Where(p => string.Equals(Path.GetDirectoryName(p), runtimeDirectory, StringComparison.Ordinal))
            .ToList();
        paths.Add(typeof(TorchSharp.torch).Assembly.Location);
        paths.Add(typeof(Peft.LoRAAttribute).Assembly.Location);
        return paths.Distinct(StringComparer.Ordinal)
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
            .ToImmutableArray();
    }
}

/// <summary>One generator run: the updated driver (for incremental re-runs), its result and the output compilation.</summary>
internal sealed record GeneratorRun(GeneratorDriver Driver, GeneratorDriverRunResult Result, Compilation Output)
{
    public ImmutableArray<GeneratedSourceResult> Sources => Result.Results[0].GeneratedSources;

    public string Source(string hintName)
    {
        var match = Sources.Where(s => s.HintName == hintName).ToList();
        Assert.True(match.Count == 1, $"expected one generated file '{hintName}', got: {string.Join(", ", Sources.Select(s => s.HintName))}");
        return match[0].SourceText.ToString();
    }
}
