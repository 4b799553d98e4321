using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

/// <summary>
/// Reads what sibling projections are found from: the calls of the class's members in its <c>forward</c> methods, and its
/// <c>Forward</c> methods (the name modules with other signatures use, as Llama's attention), that is <c>m.call(arg)</c>,
/// <c>m.forward(arg)</c> and <c>this.m.call(arg)</c>, with how each argument is written, and whether the class already has
/// an <c>ISiblingProjections</c> of its own. Syntax only: it walks the bodies of those methods and resolves a receiver by name against the class's instance fields and properties (a parameter or local of
/// the same name shadows it) and an argument identifier against the method's own parameters and locals, so it asks the
/// semantic model nothing. What the calls mean (which members group) is <c>PeftModelValidator.SiblingGroups</c>.
/// </summary>
internal static class SiblingProjectionParser
{
    /// <summary>One call found in a <c>forward</c> body, with its syntax (the analyzer reports at it).</summary>
    /// <param name="Call">The equatable description the model keeps.</param>
    /// <param name="Syntax">The invocation.</param>
    internal readonly record struct FoundCall(ForwardCallModel Call, InvocationExpressionSyntax Syntax);

    /// <summary>The member calls of every <c>forward</c> method of <paramref name="type"/> (source order of the methods, then textual order).</summary>
    public static EquatableArray<ForwardCallModel> ForwardCalls(INamedTypeSymbol type, CancellationToken cancellationToken)
        => FindForwardCalls(type, cancellationToken).Select(c => c.Call).ToEquatableArray();

    /// <summary>As <see cref="ForwardCalls"/>, with the syntax of each call; the model's call number i is element i here.</summary>
    public static List<FoundCall> FindForwardCalls(INamedTypeSymbol type, CancellationToken cancellationToken)
    {
        var result = new List<FoundCall>();
        var memberNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var member in type.GetMembers())
        {
            if (!member.IsStatic && member is IFieldSymbol { IsConst: false } or IPropertySymbol { IsIndexer: false }) memberNames.Add(member.Name);
        }
        if (memberNames.Count == 0) return result;

        var methods = new List<((string File, int Position) Order, MethodDeclarationSyntax Syntax)>();
        foreach (var symbol in type.GetMembers("forward").Concat(type.GetMembers("Forward")))
        {
            if (symbol is not IMethodSymbol { IsStatic: false } method) continue;
            foreach (var reference in method.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax(cancellationToken) is MethodDeclarationSyntax syntax)
                {
                    methods.Add(((syntax.SyntaxTree.FilePath ?? string.Empty, syntax.SpanStart), syntax));
                }
            }
        }
        methods.Sort((a, b) =>
        {
            int byFile = string.CompareOrdinal(a.Order.File, b.Order.File);
            return byFile != 0 ? byFile : a.Order.Position.CompareTo(b.Order.Position);
        });

        for (int scope = 0; scope < methods.Count; scope++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            CollectCalls(methods[scope].Syntax, scope, memberNames, result, cancellationToken);
        }
        return result;
    }

    private static void CollectCalls(
        MethodDeclarationSyntax method, int scope, HashSet<string> memberNames, List<FoundCall> result, CancellationToken cancellationToken)
    {
        SyntaxNode? body = (SyntaxNode?)method.Body ?? method.ExpressionBody;
        if (body is null) return;

        // How often each name is declared in the method (parameters, locals, pattern and out variables, lambda parameters),
        // and which names are assigned after their declaration.
        var declared = new Dictionary<string, int>(StringComparer.Ordinal);
        void Declare(SyntaxToken identifier) => declared[identifier.ValueText] = declared.TryGetValue(identifier.ValueText, out int n) ? n + 1 : 1;
        foreach (var parameter in method.ParameterList.Parameters) Declare(parameter.Identifier);

        var assigned = new HashSet<string>(StringComparer.Ordinal);
        var invocations = new List<InvocationExpressionSyntax>();
        foreach (var node in body.DescendantNodes())
        {
            switch (node)
            {
                case VariableDeclaratorSyntax declarator: Declare(declarator.Identifier); break;
                case SingleVariableDesignationSyntax designation: Declare(designation.Identifier); break;
                case ForEachStatementSyntax forEach: Declare(forEach.Identifier); break;
                case CatchDeclarationSyntax { Identifier.RawKind: not 0 } catchDeclaration: Declare(catchDeclaration.Identifier); break;
                case ParameterSyntax parameter: Declare(parameter.Identifier); break;
                case AssignmentExpressionSyntax assignment: AddAssigned(assignment.Left, assigned); break;
                case PrefixUnaryExpressionSyntax { RawKind: (int)SyntaxKind.PreIncrementExpression or (int)SyntaxKind.PreDecrementExpression } prefix:
                    AddAssigned(prefix.Operand, assigned);
                    break;
                case PostfixUnaryExpressionSyntax { RawKind: (int)SyntaxKind.PostIncrementExpression or (int)SyntaxKind.PostDecrementExpression } postfix:
                    AddAssigned(postfix.Operand, assigned);
                    break;
                case ArgumentSyntax { RefKindKeyword.RawKind: (int)SyntaxKind.RefKeyword or (int)SyntaxKind.OutKeyword } byReference:
                    AddAssigned(byReference.Expression, assigned);
                    break;
                case InvocationExpressionSyntax invocation: invocations.Add(invocation); break;
            }
        }

        foreach (var invocation in invocations)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (invocation.Expression is not MemberAccessExpressionSyntax { RawKind: (int)SyntaxKind.SimpleMemberAccessExpression } access) continue;
            if (access.Name is not IdentifierNameSyntax { Identifier.ValueText: "call" or "forward" }) continue;
            string? member = access.Expression switch
            {
                IdentifierNameSyntax name when !declared.ContainsKey(name.Identifier.ValueText) => name.Identifier.ValueText,
                MemberAccessExpressionSyntax { RawKind: (int)SyntaxKind.SimpleMemberAccessExpression, Expression: ThisExpressionSyntax, Name: IdentifierNameSyntax name } => name.Identifier.ValueText,
                _ => null,
            };
            if (member is null || !memberNames.Contains(member)) continue;
            if (invocation.ArgumentList.Arguments is not { Count: 1 } arguments || arguments[0].RefKindKeyword.RawKind != 0) continue;

            var argument = arguments[0].Expression;
            while (argument is ParenthesizedExpressionSyntax parenthesized) argument = parenthesized.Expression;
            ForwardCallModel call;
            if (argument is IdentifierNameSyntax identifier && declared.TryGetValue(identifier.Identifier.ValueText, out int declarations))
            {
                string name = identifier.Identifier.ValueText;
                var kind = declarations == 1 && !assigned.Contains(name) ? CallArgumentKind.Identifier : CallArgumentKind.ReassignedIdentifier;
                call = new ForwardCallModel(member, name, kind, scope);
            }
            else
            {
                call = new ForwardCallModel(member, string.Concat(argument.DescendantTokens().Select(t => t.Text)), CallArgumentKind.Expression, scope);
            }
            result.Add(new FoundCall(call, invocation));
        }
    }

    /// <summary>The identifiers an assignment target writes: <c>x</c>, and each <c>x</c> of a deconstruction <c>(x, y)</c>.</summary>
    private static void AddAssigned(ExpressionSyntax target, HashSet<string> assigned)
    {
        while (target is ParenthesizedExpressionSyntax parenthesized) target = parenthesized.Expression;
        switch (target)
        {
            case IdentifierNameSyntax name:
                assigned.Add(name.Identifier.ValueText);
                break;
            case TupleExpressionSyntax tuple:
                foreach (var element in tuple.Arguments) AddAssigned(element.Expression, assigned);
                break;
        }
    }

    /// <summary>
    /// True when a base class implements <c>Peft.ISiblingProjections</c>, or a hand-written declaration of the class lists it
    /// (by name, in its base list; the generator's own <c>*.Peft.g.cs</c> file, which the analyzers see, does not count).
    /// </summary>
    public static bool ImplementsByHand(INamedTypeSymbol type, CancellationToken cancellationToken)
    {
        string metadataName = "Peft." + KnownNames.SiblingProjectionsInterface;
        if (type.BaseType is { } baseType && baseType.AllInterfaces.Any(i => i.ToDisplayString() == metadataName)) return true;
        foreach (var reference in type.DeclaringSyntaxReferences)
        {
            if (reference.SyntaxTree.FilePath.EndsWith(".Peft.g.cs", StringComparison.OrdinalIgnoreCase)) continue;
            if (reference.GetSyntax(cancellationToken) is not TypeDeclarationSyntax { BaseList: { } baseList }) continue;
            foreach (var listed in baseList.Types)
            {
                if (RightmostName(listed.Type) == KnownNames.SiblingProjectionsInterface) return true;
            }
        }
        return false;
    }

    private static string? RightmostName(TypeSyntax type) => type switch
    {
        IdentifierNameSyntax name => name.Identifier.ValueText,
        QualifiedNameSyntax qualified => qualified.Right.Identifier.ValueText,
        AliasQualifiedNameSyntax alias => alias.Name.Identifier.ValueText,
        _ => null,
    };
}
