using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Operations;
using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

// The layer a member is built from: constant sizes of Linear(..), Embedding(..) and LayerNorm(..) initializers.
internal static partial class PeftParser
{
    /// <summary>
    /// Finds the expression that builds the member (field/property initializer or an assignment in a
    /// constructor) and, if it is a call to <c>torch.nn.Linear</c>/<c>Embedding</c>, reads the sizes that are
    /// compile-time constants.
    /// </summary>
    private static LayerInfo? FindLayer(ISymbol member, INamedTypeSymbol type, Compilation compilation, CancellationToken cancellationToken)
    {
        foreach (var expression in CandidateExpressions(member, type, cancellationToken))
        {
            var model = compilation.GetSemanticModel(expression.SyntaxTree);
            var operation = model.GetOperation(expression, cancellationToken);
            while (operation is IConversionOperation conversion) operation = conversion.Operand;
            if (operation is not IInvocationOperation invocation) continue;
            var method = invocation.TargetMethod;
            if (method.ContainingType?.ToDisplayString() != KnownNames.NnStaticClass) continue;
            LayerKind kind = method.Name switch
            {
                "Linear" => LayerKind.Linear,
                "Embedding" => LayerKind.Embedding,
                "LayerNorm" => LayerKind.Norm,
                _ => LayerKind.Unknown,
            };
            if (kind == LayerKind.Unknown) return new LayerInfo(LayerKind.Unknown, null, null);
            long? first = null, second = null;
            bool? hasBias = null;
            bool? hasAffine = null;
            string? dtype = null;
            foreach (var argument in invocation.Arguments)
            {
                if (argument.Parameter is null) continue;
                if (kind == LayerKind.Norm && argument.Parameter.Name == "elementwise_affine")
                {
                    hasAffine = argument.Value.ConstantValue is { HasValue: true, Value: bool affine } ? affine : null;
                    continue;
                }
                if (kind == LayerKind.Linear && argument.Parameter.Name == "dtype")
                {
                    dtype = DTypeText(argument);
                    continue;
                }
                if ((kind == LayerKind.Linear && argument.Parameter.Name == "hasBias") || (kind == LayerKind.Norm && argument.Parameter.Name == "bias"))
                {
                    // Omitted arguments appear with their default value (true).
                    hasBias = argument.Value.ConstantValue is { HasValue: true, Value: bool b } ? b : null;
                    continue;
                }
                long? value = argument.Value.ConstantValue.HasValue
                    ? ToLong(argument.Value.ConstantValue.Value)
                    : kind == LayerKind.Norm ? SingleElementArray(argument.Value) : null;
                switch (argument.Parameter.Ordinal)
                {
                    case 0: first = value; break;
                    case 1: second = value; break;
                }
            }
            // LayerNorm(d) normalises d values: its weight (and bias) are [d], which both sizes describe.
            if (kind == LayerKind.Norm) second = first;
            return new LayerInfo(kind, first, second, hasBias, hasAffine) { DType = dtype };
        }
        return null;
    }

    /// <summary><c>Linear(..)</c>'s dtype argument: "default" when omitted or null, the <c>ScalarType</c> member's name when
    /// a constant, else null (not known at compile time).</summary>
    private static string? DTypeText(IArgumentOperation argument)
    {
        if (argument.ArgumentKind == Microsoft.CodeAnalysis.Operations.ArgumentKind.DefaultValue) return DefaultDType;
        var value = argument.Value;
        while (value is IConversionOperation conversion) value = conversion.Operand;
        if (value is IFieldReferenceOperation { Field: { IsConst: true, ContainingType.TypeKind: TypeKind.Enum } field }) return field.Name;
        if (value.ConstantValue is { HasValue: true } constant)
        {
            return constant.Value is null ? DefaultDType : System.Convert.ToString(constant.Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        return null;
    }

    /// <summary>What <see cref="LayerInfo.DType"/> holds for a Linear built without a dtype (the default dtype).</summary>
    public const string DefaultDType = "default";

    /// <summary>The one element of <c>new long[] { d }</c> / <c>new[] { d }</c> when it is a compile-time constant.</summary>
    private static long? SingleElementArray(IOperation operation)
    {
        while (operation is IConversionOperation conversion) operation = conversion.Operand;
        if (operation is IArrayCreationOperation { Initializer.ElementValues: { Length: 1 } elements } && elements[0].ConstantValue.HasValue)
        {
            return ToLong(elements[0].ConstantValue.Value);
        }
        return null;
    }


    private static IEnumerable<ExpressionSyntax> CandidateExpressions(ISymbol member, INamedTypeSymbol type, CancellationToken cancellationToken)
    {
        foreach (var reference in member.DeclaringSyntaxReferences)
        {
            var syntax = reference.GetSyntax(cancellationToken);
            if (syntax is VariableDeclaratorSyntax { Initializer.Value: { } fieldValue }) yield return fieldValue;
            if (syntax is PropertyDeclarationSyntax { Initializer.Value: { } propertyValue }) yield return propertyValue;
        }

        foreach (var constructor in type.InstanceConstructors)
        {
            foreach (var reference in constructor.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax(cancellationToken) is not ConstructorDeclarationSyntax ctor) continue;
                SyntaxNode? body = (SyntaxNode?)ctor.Body ?? ctor.ExpressionBody;
                if (body is null) continue;
                foreach (var assignment in body.DescendantNodes().OfType<AssignmentExpressionSyntax>())
                {
                    if (!assignment.IsKind(SyntaxKind.SimpleAssignmentExpression)) continue;
                    string? target = assignment.Left switch
                    {
                        IdentifierNameSyntax id => id.Identifier.ValueText,
                        MemberAccessExpressionSyntax { Expression: ThisExpressionSyntax, Name: var name } => name.Identifier.ValueText,
                        _ => null,
                    };
                    if (target == member.Name) yield return assignment.Right;
                }
            }
        }
    }
}
