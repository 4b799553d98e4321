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
using Peft.Generators.Parsing;

namespace Peft.CodeFixes;

/// <summary>
/// PEFT0012: "Remove readonly" on a readonly field; "Add a setter" on an auto-property with only <c>get</c> (or
/// <c>get; init;</c>, whose <c>init</c> becomes <c>set</c>). Properties with hand-written accessors get no fix.
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(MakeWritableCodeFixProvider)), Shared]
public sealed class MakeWritableCodeFixProvider : CodeFixProvider
{
    /// <summary>The code action title for fields.</summary>
    public const string RemoveReadOnlyTitle = "Remove readonly";

    /// <summary>The code action title for auto-properties.</summary>
    public const string AddSetterTitle = "Add a setter";

    /// <inheritdoc />
    public override ImmutableArray<string> FixableDiagnosticIds => ImmutableArray.Create(PeftDiagnosticIds.ReadOnlyMember);

    /// <inheritdoc />
    public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

    /// <inheritdoc />
    public override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        if (root is null) return;
        foreach (var diagnostic in context.Diagnostics)
        {
            var node = root.FindToken(diagnostic.Location.SourceSpan.Start).Parent;
            var document = context.Document;
            if (node?.AncestorsAndSelf().OfType<FieldDeclarationSyntax>().FirstOrDefault() is { } field
                && field.Modifiers.Any(SyntaxKind.ReadOnlyKeyword))
            {
                context.RegisterCodeFix(
                    CodeAction.Create(RemoveReadOnlyTitle, ct => RemoveReadOnlyAsync(document, field, ct), equivalenceKey: RemoveReadOnlyTitle),
                    diagnostic);
            }
            else if (node?.AncestorsAndSelf().OfType<PropertyDeclarationSyntax>().FirstOrDefault() is { } property
                && IsAutoPropertyWithoutSetter(property))
            {
                context.RegisterCodeFix(
                    CodeAction.Create(AddSetterTitle, ct => AddSetterAsync(document, property, ct), equivalenceKey: AddSetterTitle),
                    diagnostic);
            }
        }
    }

    private static bool IsAutoPropertyWithoutSetter(PropertyDeclarationSyntax property)
    {
        var accessors = property.AccessorList?.Accessors;
        if (accessors is null || accessors.Value.Any(a => a.Body is not null || a.ExpressionBody is not null)) return false;
        return !accessors.Value.Any(a => a.IsKind(SyntaxKind.SetAccessorDeclaration))
            && accessors.Value.Any(a => a.IsKind(SyntaxKind.GetAccessorDeclaration));
    }

    private static async Task<Document> RemoveReadOnlyAsync(Document document, FieldDeclarationSyntax field, CancellationToken cancellationToken)
    {
        var root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
        if (root is null) return document;
        var modifiers = field.Modifiers;
        int index = modifiers.IndexOf(SyntaxKind.ReadOnlyKeyword);
        var readOnlyToken = modifiers[index];
        FieldDeclarationSyntax newField;
        if (index == 0)
        {
            // Keep the declaration's leading trivia (indentation, comments) on whatever now comes first.
            var rest = modifiers.RemoveAt(0);
            newField = rest.Count > 0
                ? field.WithModifiers(rest.Replace(rest[0], rest[0].WithLeadingTrivia(readOnlyToken.LeadingTrivia)))
                : field.WithModifiers(rest).WithDeclaration(field.Declaration.WithType(
                    field.Declaration.Type.WithLeadingTrivia(readOnlyToken.LeadingTrivia)));
        }
        else
        {
            newField = field.WithModifiers(modifiers.RemoveAt(index));
        }
        return document.WithSyntaxRoot(root.ReplaceNode(field, newField));
    }

    private static async Task<Document> AddSetterAsync(Document document, PropertyDeclarationSyntax property, CancellationToken cancellationToken)
    {
        var root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
        if (root is null || property.AccessorList is null) return document;
        var accessorList = property.AccessorList;
        var init = accessorList.Accessors.FirstOrDefault(a => a.IsKind(SyntaxKind.InitAccessorDeclaration));
        AccessorListSyntax newList;
        if (init is not null)
        {
            var set = SyntaxFactory.AccessorDeclaration(SyntaxKind.SetAccessorDeclaration)
                .WithModifiers(init.Modifiers)
                .WithAttributeLists(init.AttributeLists)
                .WithSemicolonToken(init.SemicolonToken)
                .WithKeyword(SyntaxFactory.Token(init.Keyword.LeadingTrivia, SyntaxKind.SetKeyword, init.Keyword.TrailingTrivia));
            newList = accessorList.ReplaceNode(init, set);
        }
        else
        {
            var get = accessorList.Accessors.First(a => a.IsKind(SyntaxKind.GetAccessorDeclaration));
            var set = SyntaxFactory.AccessorDeclaration(SyntaxKind.SetAccessorDeclaration)
                .WithSemicolonToken(SyntaxFactory.Token(SyntaxKind.SemicolonToken))
                .WithLeadingTrivia(SyntaxFactory.Space)
                .WithTrailingTrivia(get.GetTrailingTrivia());
            newList = accessorList.WithAccessors(accessorList.Accessors.Replace(get, get.WithoutTrailingTrivia()).Add(set));
        }
        return document.WithSyntaxRoot(root.ReplaceNode(property, property.WithAccessorList(newList)));
    }
}
