using System.Collections.Generic;
using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Editing;
using Peft.Generators.Parsing;

namespace Peft.CodeFixes;

/// <summary>
/// PEFT0007 "Make partial": adds <c>partial</c> to every declaration of the annotated class and of each type that contains
/// it that lacks the modifier, in whichever documents they are declared.
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(MakePartialCodeFixProvider)), Shared]
public sealed class MakePartialCodeFixProvider : CodeFixProvider
{
    /// <summary>The code action title.</summary>
    public const string Title = "Make partial";

    /// <inheritdoc />
    public override ImmutableArray<string> FixableDiagnosticIds => ImmutableArray.Create(PeftDiagnosticIds.NotPartial);

    /// <inheritdoc />
    public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

    /// <inheritdoc />
    public override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        if (root is null) return;
        foreach (var diagnostic in context.Diagnostics)
        {
            var declaration = root.FindToken(diagnostic.Location.SourceSpan.Start).Parent?.AncestorsAndSelf()
                .OfType<TypeDeclarationSyntax>().FirstOrDefault();
            if (declaration is null) continue;
            var document = context.Document;
            context.RegisterCodeFix(
                CodeAction.Create(Title, ct => MakePartialAsync(document, declaration, ct), equivalenceKey: Title),
                diagnostic);
        }
    }

    private static async Task<Solution> MakePartialAsync(Document document, TypeDeclarationSyntax declaration, CancellationToken cancellationToken)
    {
        var solution = document.Project.Solution;
        var semanticModel = await document.GetSemanticModelAsync(cancellationToken).ConfigureAwait(false);
        if (semanticModel?.GetDeclaredSymbol(declaration, cancellationToken) is not INamedTypeSymbol type) return solution;

        // Every declaration in the chain that lacks partial, grouped by document.
        var byTree = new Dictionary<SyntaxTree, List<TypeDeclarationSyntax>>();
        for (var t = type; t is not null; t = t.ContainingType)
        {
            foreach (var reference in t.DeclaringSyntaxReferences)
            {
                if (await reference.GetSyntaxAsync(cancellationToken).ConfigureAwait(false) is not TypeDeclarationSyntax syntax) continue;
                if (syntax.Modifiers.Any(SyntaxKind.PartialKeyword)) continue;
                if (!byTree.TryGetValue(syntax.SyntaxTree, out var list)) byTree[syntax.SyntaxTree] = list = new List<TypeDeclarationSyntax>();
                list.Add(syntax);
            }
        }

        foreach (var pair in byTree)
        {
            var target = solution.GetDocument(pair.Key);
            if (target is null) continue;
            var root = await target.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            if (root is null) continue;
            var generator = SyntaxGenerator.GetGenerator(target);
            var newRoot = root.ReplaceNodes(pair.Value, (original, rewritten) =>
                generator.WithModifiers(rewritten, generator.GetModifiers(rewritten).WithPartial(true)));
            solution = solution.WithDocumentSyntaxRoot(target.Id, newRoot);
        }
        return solution;
    }
}
