using System.Reflection;
using Microsoft.CodeAnalysis;
using Peft.Analyzers.Diagnostics;
using Peft.Generators.Methods;
using Peft.Generators.Parsing;

namespace Peft.Analyzers.Tests;

/// <summary>Every descriptor has a docs page, a help link to it, a release-tracking entry, and an ID constant.</summary>
public class DescriptorDocsTests
{
    public static TheoryData<string> Ids()
    {
        var data = new TheoryData<string>();
        foreach (var descriptor in DiagnosticDescriptors.All) data.Add(descriptor.Id);
        return data;
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void DocsPageExists_WithTitleSeverityAndSections(string id)
    {
        var descriptor = DiagnosticDescriptors.ById(id)!;
        string path = Path.Combine(RepoRoot(), "docs", "diagnostics", id + ".md");
        Assert.True(File.Exists(path), "Missing docs page " + path);

        string page = File.ReadAllText(path);
        Assert.StartsWith($"# {id}: {descriptor.Title}\n", page.ReplaceLineEndings("\n"));
        Assert.Contains($"| Severity | {descriptor.DefaultSeverity} |", page);
        Assert.Contains("| Category | Peft |", page);
        foreach (string section in new[] { "## Cause", "## Example", "## How to fix", "## How to suppress" })
        {
            Assert.Contains(section, page);
        }
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void HelpLink_IsTheFileUriOfItsPage_WhenThePagesFolderIsKnown(string id)
    {
        // No web site hosts the pages: without the folder there is no link (rather than a dead one), and the description
        // says where the package keeps them.
        var template = DiagnosticDescriptors.ById(id)!;
        Assert.Equal(string.Empty, template.HelpLinkUri);
        Assert.Contains("docs/diagnostics/", template.Description.ToString(), StringComparison.Ordinal);
        Assert.Equal("Peft", template.Category);

        string folder = Path.Combine(RepoRoot(), "docs", "diagnostics");
        var descriptor = DiagnosticDescriptors.WithDocs(folder)[id];
        var uri = new Uri(descriptor.HelpLinkUri);
        Assert.True(uri.IsFile, descriptor.HelpLinkUri);
        Assert.StartsWith("file:///", descriptor.HelpLinkUri, StringComparison.Ordinal);
        Assert.Equal(Path.Combine(folder, id + ".md"), uri.LocalPath);
        Assert.StartsWith($"# {id}: ", File.ReadAllText(uri.LocalPath), StringComparison.Ordinal);
        Assert.Contains(Path.Combine(folder, id + ".md"), descriptor.Description.ToString(), StringComparison.Ordinal);

        // Everything else is the template's.
        Assert.Equal(template.Title, descriptor.Title);
        Assert.Equal(template.MessageFormat, descriptor.MessageFormat);
        Assert.Equal(template.DefaultSeverity, descriptor.DefaultSeverity);
        Assert.Equal(template.CustomTags, descriptor.CustomTags);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("docs/diagnostics")]
    public void NoAbsoluteFolder_GivesNoLinks(string? folder)
    {
        var set = DiagnosticDescriptors.WithDocs(folder);
        Assert.All(set.All, d => Assert.Equal(string.Empty, d.HelpLinkUri));
        Assert.Equal(DiagnosticDescriptors.All.Select(d => d.Id), set.All.Select(d => d.Id));
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void IndexAndReleaseTracking_ListTheId(string id)
    {
        var descriptor = DiagnosticDescriptors.ById(id)!;
        string index = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "diagnostics", "README.md"));
        Assert.Contains($"| [{id}]({id}.md) | {descriptor.Title} | {descriptor.DefaultSeverity} |", index);

        string unshipped = File.ReadAllText(Path.Combine(RepoRoot(), "src", "Peft.Analyzers", "AnalyzerReleases.Unshipped.md"));
        Assert.Contains($"{id} | Peft | {descriptor.DefaultSeverity} |", unshipped);
    }

    [Fact]
    public void Descriptors_CoverEveryIdConstant_OnceAndInOrder()
    {
        var constants = typeof(PeftDiagnosticIds)
            .GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral)
            .Select(f => (string)f.GetRawConstantValue()!)
            .OrderBy(id => id, StringComparer.Ordinal)
            .ToArray();
        var methodOwned = MethodCatalogue.All.SelectMany(m => m.Diagnostics).Select(d => d.Id).OrderBy(id => id, StringComparer.Ordinal).ToArray();
        var ids = DiagnosticDescriptors.All.Select(d => d.Id).ToArray();

        Assert.Equal(29, constants.Length);   // shared IDs: PEFT0001-0018, 0033-0034 (LoFiT), 0035-0037 (bottleneck), 0040-0042 (MEFT), 0049 (prefix, adaption prompt), 0051-0052 (sibling projections)
        Assert.Equal(constants.Concat(methodOwned).OrderBy(id => id, StringComparer.Ordinal), ids);
        Assert.Equal(ids.Length, ids.Distinct(StringComparer.Ordinal).Count());
        Assert.Equal(ids.OrderBy(id => id, StringComparer.Ordinal), ids);
        Assert.Equal(ids, new PeftAttributeAnalyzer().SupportedDiagnostics.Select(d => d.Id));
    }

    [Fact]
    public void NoDocsPageWithoutDescriptor()
    {
        var pages = Directory.GetFiles(Path.Combine(RepoRoot(), "docs", "diagnostics"), "PEFT*.md")
            .Select(Path.GetFileNameWithoutExtension)
            .OrderBy(n => n, StringComparer.Ordinal);
        Assert.Equal(DiagnosticDescriptors.All.Select(d => d.Id), pages);
    }

    [Fact]
    public void OnlyPEFT0019PEFT0025PEFT0043AndPEFT0052AreWarnings_PEFT0051IsInfo_AndPEFT0011IsACompilationEndDiagnostic()
    {
        // PEFT0013 is an error: a model built without InitializePeft() silently trains every parameter (issue 9, item 4).
        // PEFT0019 (IA3 random init) and PEFT0025 (SSF without a bias: only its merge is refused) describe models that work;
        // PEFT0043 (an EVA rank whose default 2r components exceed the layer's input) works with a rho given at run time;
        // PEFT0052 (a declared sibling group that cannot apply) only leaves the group unfused. PEFT0051 (a sibling group
        // found in forward) is information.
        Assert.Equal(DiagnosticSeverity.Error, DiagnosticDescriptors.MissingInitializeCall.DefaultSeverity);
        Assert.Equal(new[] { "PEFT0019", "PEFT0025", "PEFT0043", "PEFT0052" },
            DiagnosticDescriptors.All.Where(d => d.DefaultSeverity == DiagnosticSeverity.Warning).Select(d => d.Id).Order(StringComparer.Ordinal));
        Assert.Equal(new[] { "PEFT0051" },
            DiagnosticDescriptors.All.Where(d => d.DefaultSeverity == DiagnosticSeverity.Info).Select(d => d.Id));
        Assert.All(DiagnosticDescriptors.All, d => Assert.NotEqual(DiagnosticSeverity.Hidden, d.DefaultSeverity));
        Assert.Contains(WellKnownDiagnosticTags.CompilationEnd, DiagnosticDescriptors.InvalidMSBuildProperty.CustomTags);
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (Directory.Exists(Path.Combine(dir.FullName, "docs", "diagnostics"))
                && Directory.Exists(Path.Combine(dir.FullName, "src", "Peft.Analyzers")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException("Repository root (with docs/diagnostics) not found above " + AppContext.BaseDirectory);
    }
}
