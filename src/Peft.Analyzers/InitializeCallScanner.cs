using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Parsing;

namespace Peft.Analyzers;

/// <summary>
/// Finds the constructors that never call the generated <c>InitializePeft()</c> (PEFT0013). Shared by the analyzer and
/// the code fix so both agree on which constructors need the call.
/// </summary>
internal static class InitializeCallScanner
{
    /// <summary>
    /// True when <paramref name="constructor"/> calls <c>InitializePeft()</c> in its body (directly or as
    /// <c>this.InitializePeft()</c>), chains to another constructor of the same class with <c>: this(...)</c> (that one
    /// is checked on its own), or has no body.
    /// </summary>
    public static bool CallsInitialize(ConstructorDeclarationSyntax constructor)
    {
        if (constructor.Initializer is { } initializer && initializer.IsKind(SyntaxKind.ThisConstructorInitializer)) return true;
        SyntaxNode? body = (SyntaxNode?)constructor.Body ?? constructor.ExpressionBody;
        if (body is null) return true;
        return body.DescendantNodesAndSelf().OfType<InvocationExpressionSyntax>().Any(IsInitializeCall);
    }

    /// <summary>The source constructors of <paramref name="type"/> that lack the call, in declaration order.</summary>
    public static List<(IMethodSymbol Symbol, ConstructorDeclarationSyntax Syntax)> ConstructorsLackingCall(
        INamedTypeSymbol type, CancellationToken cancellationToken)
    {
        var lacking = new List<(IMethodSymbol, ConstructorDeclarationSyntax)>();
        foreach (var constructor in type.InstanceConstructors)
        {
            if (constructor.IsImplicitlyDeclared) continue;
            foreach (var reference in constructor.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax(cancellationToken) is ConstructorDeclarationSyntax syntax && !CallsInitialize(syntax))
                {
                    lacking.Add((constructor, syntax));
                }
            }
        }
        lacking.Sort((a, b) =>
        {
            int byFile = string.CompareOrdinal(a.Item2.SyntaxTree.FilePath, b.Item2.SyntaxTree.FilePath);
            return byFile != 0 ? byFile : a.Item2.SpanStart.CompareTo(b.Item2.SpanStart);
        });
        return lacking;
    }

    private static bool IsInitializeCall(InvocationExpressionSyntax invocation) => invocation.Expression switch
    {
        IdentifierNameSyntax name => name.Identifier.ValueText == KnownNames.InitializeMethodName,
        MemberAccessExpressionSyntax { Expression: ThisExpressionSyntax, Name: IdentifierNameSyntax name } =>
            name.Identifier.ValueText == KnownNames.InitializeMethodName,
        _ => false,
    };
}
