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
using Microsoft.CodeAnalysis.Formatting;
using Peft.Analyzers;
using Peft.Generators.Parsing;

namespace Peft.CodeFixes;

/// <summary>
/// PEFT0013 "Call InitializePeft() in constructors": appends <c>InitializePeft();</c> as the last statement of every
/// constructor of the class that neither calls it nor chains to another constructor with <c>: this(...)</c>.
/// An expression-bodied constructor becomes a block body.
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(AddInitializePeftCallCodeFixProvider)), Shared]
public sealed class AddInitializePeftCallCodeFixProvider : CodeFixProvider
{
    /// <summary>The code action title.</summary>
    public const string Title = "Call InitializePeft() in constructors";

    /// <inheritdoc />
    public override ImmutableArray<string> FixableDiagnosticIds => ImmutableArray.Create(PeftDiagnosticIds.MissingInitializeCall);

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
                CodeAction.Create(Title, ct => AddCallsAsync(document, declaration, ct), equivalenceKey: Title),
                diagnostic);
        }
    }

    private static async Task<Solution> AddCallsAsync(Document document, TypeDeclarationSyntax declaration, CancellationToken cancellationToken)
    {
        var solution = document.Project.Solution;
        var semanticModel = await document.GetSemanticModelAsync(cancellationToken).ConfigureAwait(false);
        if (semanticModel?.GetDeclaredSymbol(declaration, cancellationToken) is not INamedTypeSymbol type) return solution;

        foreach (var group in InitializeCallScanner.ConstructorsLackingCall(type, cancellationToken).GroupBy(c => c.Syntax.SyntaxTree))
        {
            var target = solution.GetDocument(group.Key);
            if (target is null) continue;
            var root = await target.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            if (root is null) continue;
            var constructors = group.Select(c => c.Syntax).ToList();
            var newRoot = root.ReplaceNodes(constructors, (original, rewritten) => AppendCall(rewritten));
            solution = solution.WithDocumentSyntaxRoot(target.Id, newRoot);
        }
        return solution;
    }

    private static ConstructorDeclarationSyntax AppendCall(ConstructorDeclarationSyntax constructor)
    {
        var call = SyntaxFactory.ExpressionStatement(
                SyntaxFactory.InvocationExpression(SyntaxFactory.IdentifierName(KnownNames.InitializeMethodName)))
            .WithAdditionalAnnotations(Formatter.Annotation);

        if (constructor.Body is { } body)
        {
            return constructor.WithBody(body.AddStatements(call).WithAdditionalAnnotations(Formatter.Annotation));
        }

        if (constructor.ExpressionBody is { } arrow)
        {
            var statements = new List<StatementSyntax>
            {
                SyntaxFactory.ExpressionStatement(arrow.Expression.WithoutTrivia()),
                call,
            };
            var block = SyntaxFactory.Block(statements)
                .WithTrailingTrivia(constructor.SemicolonToken.TrailingTrivia)
                .WithAdditionalAnnotations(Formatter.Annotation);
            return constructor
                .WithExpressionBody(null)
                .WithSemicolonToken(default)
                .WithParameterList(constructor.ParameterList.WithTrailingTrivia(SyntaxFactory.ElasticMarker))
                .WithInitializer(constructor.Initializer?.WithTrailingTrivia(SyntaxFactory.ElasticMarker))
                .WithBody(block)
                .WithAdditionalAnnotations(Formatter.Annotation);
        }

        return constructor;
    }
}
