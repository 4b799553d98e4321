using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Analyzers.Tests.Infrastructure;

namespace Peft.Analyzers.Tests;

/// <summary>
/// The analyzers report with the help link the compilation's <c>PeftDiagnosticsDocs</c> property gives (Peft.Runtime.props
/// sets it to the package's docs/diagnostics/ folder): the file URI of the page, and its path in the description.
/// </summary>
public class HelpLinkTests
{
    private const string Source = PeftTestSetup.Usings + """
        public sealed partial class RankZero : Module<Tensor, Tensor>
        {
            [LoRA(rank: 0)] private Module<Tensor, Tensor> proj = Linear(8, 8);
            public RankZero() : base(nameof(RankZero)) => RegisterComponents();
            public override Tensor forward(Tensor x) => proj.call(x);
        }

        public sealed partial class Mlp : Module<Tensor, Tensor>
        {
            private Module<Tensor, Tensor> up = Linear(8, 8);
            public Mlp() : base(nameof(Mlp)) => RegisterComponents();
            public override Tensor forward(Tensor x) => up.call(x);
            public static void Apply(Mlp m) => m.ApplyTargets(new PeftTargets(TargetModules.Names("upp")));
        }
        """;

    [Fact]
    public async Task ReportedDiagnostics_LinkToTheirPageInTheDocsFolder()
    {
        string folder = Path.Combine(RepoRoot(), "docs", "diagnostics");
        var diagnostics = await Analyze(folder);
        Assert.Equal(new[] { "PEFT0001", "PEFT0013", "PEFT0018" }, diagnostics.Select(d => d.Id).Distinct().Order());
        foreach (var diagnostic in diagnostics)
        {
            string page = Path.Combine(folder, diagnostic.Id + ".md");
            Assert.Equal(new Uri(page).AbsoluteUri, diagnostic.Descriptor.HelpLinkUri);
            Assert.True(File.Exists(new Uri(diagnostic.Descriptor.HelpLinkUri).LocalPath), diagnostic.Descriptor.HelpLinkUri);
            Assert.Contains(page, diagnostic.Descriptor.Description.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task WithoutTheProperty_NoLink_AndTheDescriptionSaysWhereThePackageKeepsThePages()
    {
        var diagnostics = await Analyze(folder: null);
        Assert.NotEmpty(diagnostics);
        Assert.All(diagnostics, d => Assert.Equal(string.Empty, d.Descriptor.HelpLinkUri));
        Assert.All(diagnostics, d => Assert.Contains("docs/diagnostics/", d.Descriptor.Description.ToString(), StringComparison.Ordinal));
    }

    private static async Task<ImmutableArray<Diagnostic>> Analyze(string? folder)
    {
        var compilation = CSharpCompilation.Create(
            "HelpLinks",
            [CSharpSyntaxTree.ParseText(Source)],
            TestReferences.All,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        var options = new AnalyzerOptions(
            ImmutableArray<AdditionalText>.Empty,
            new OptionsProvider(folder is null ? new() : new() { ["build_property.PeftDiagnosticsDocs"] = folder }));
        var analyzers = ImmutableArray.Create<DiagnosticAnalyzer>(new PeftAttributeAnalyzer(), new TargetNamesAnalyzer());
        return await compilation.WithAnalyzers(analyzers, options).GetAnalyzerDiagnosticsAsync();
    }

    private sealed class OptionsProvider(Dictionary<string, string> values) : AnalyzerConfigOptionsProvider
    {
        public override AnalyzerConfigOptions GlobalOptions { get; } = new Options(values);

        public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => new Options(new());

        public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) => new Options(new());

        private sealed class Options(Dictionary<string, string> values) : AnalyzerConfigOptions
        {
            public override bool TryGetValue(string key, [NotNullWhen(true)] out string? value) => values.TryGetValue(key, out value);
        }
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (Directory.Exists(Path.Combine(dir.FullName, "docs", "diagnostics"))) return dir.FullName;
        }
        throw new DirectoryNotFoundException("docs/diagnostics not found above " + AppContext.BaseDirectory);
    }
}
