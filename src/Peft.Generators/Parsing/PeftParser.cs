using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Operations;
using Peft.Generators.Methods;
using Peft.Generators.Model;
using ArgumentKind = Peft.Generators.Model.ArgumentKind;

namespace Peft.Generators.Parsing;

/// <summary>
/// Turns an annotated class symbol into an immutable <see cref="PeftClassModel"/>. Shared by the generator
/// (which emits code for valid models) and the analyzers (which validate the same model), so both agree
/// on what a declaration means. It reports nothing itself: validation lives in <c>PeftModelValidator</c>.
/// </summary>
internal static partial class PeftParser
{
    /// <summary>Builds the model of <paramref name="type"/>, or null when it is not a class.</summary>
    public static PeftClassModel? Parse(INamedTypeSymbol type, Compilation compilation, CancellationToken cancellationToken)
    {
        if (type.TypeKind != TypeKind.Class) return null;

        var hierarchy = BuildHierarchy(type);
        bool frozenClass = type.GetAttributes().Any(a => Is(a, KnownNames.FreezeAttribute));
        bool adaptable = type.GetAttributes().Any(a => Is(a, KnownNames.AdaptableAttribute));
        bool isPartial = IsPartialChain(type, cancellationToken);
        bool isModule = DerivesFrom(type, KnownNames.Module);

        var members = new List<((string File, int Position) Order, MemberModel Member)>();
        var fuseDeclarations = new List<((string File, int Position) Order, FuseDeclarationModel Declaration)>();
        foreach (var symbol in type.GetMembers())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (symbol.IsStatic || symbol.IsImplicitlyDeclared) continue;

            ITypeSymbol memberType;
            bool isProperty;
            bool isReadOnly;
            switch (symbol)
            {
                case IFieldSymbol field when !field.IsConst && field.AssociatedSymbol is null:
                    memberType = field.Type;
                    isProperty = false;
                    isReadOnly = field.IsReadOnly;
                    break;
                case IPropertySymbol property when !property.IsIndexer:
                    memberType = property.Type;
                    isProperty = true;
                    isReadOnly = property.SetMethod is null || property.SetMethod.IsInitOnly;
                    break;
                default:
                    continue;
            }

            var attributes = symbol.GetAttributes();
            var adapters = new List<AdapterModel>();
            bool frozen = false, trainable = false;
            foreach (var attribute in attributes)
            {
                var adapter = ParseAdapter(attribute);
                if (adapter is not null) adapters.Add(adapter);
                else if (Is(attribute, KnownNames.FreezeAttribute)) frozen = true;
                else if (Is(attribute, KnownNames.TrainableAttribute)) trainable = true;
                else if (Is(attribute, KnownNames.FuseProjectionsAttribute))
                {
                    string? group = attribute.ConstructorArguments is { Length: 1 } fuse ? fuse[0].Value as string : null;
                    fuseDeclarations.Add((DeclarationOrder(symbol), new FuseDeclarationModel(symbol.Name, group)));
                }
            }

            var component = ClassifyComponent(memberType);
            bool annotated = adapters.Count > 0 || frozen || trainable;
            // Properties are registered only when annotated: TorchSharp's own convention is fields.
            if (component == ComponentKind.None && !annotated) continue;
            if (isProperty && !annotated) continue;

            LayerInfo? layer = component == ComponentKind.Module
                ? FindLayer(symbol, type, compilation, cancellationToken)
                : null;

            members.Add((DeclarationOrder(symbol), new MemberModel(
                Name: symbol.Name,
                IsProperty: isProperty,
                TypeName: memberType.ToDisplayString(SymbolDisplayFormat.FullyQualifiedFormat),
                Component: component,
                Frozen: frozen,
                Trainable: trainable,
                Adapters: adapters.ToEquatableArray(),
                Layer: layer,
                IsReadOnly: isReadOnly,
                AcceptsWrapper: AcceptsWrapper(memberType))
            {
                IsLinearType = memberType.WithNullableAnnotation(NullableAnnotation.NotAnnotated).ToDisplayString() == KnownNames.Linear,
                IsNormType = memberType.WithNullableAnnotation(NullableAnnotation.NotAnnotated).ToDisplayString() == KnownNames.LayerNorm,
            }));
        }

        return new PeftClassModel(
            hierarchy,
            frozenClass,
            members.OrderBy(m => m.Order.File, StringComparer.Ordinal).ThenBy(m => m.Order.Position).Select(m => m.Member).ToEquatableArray(),
            isPartial,
            isModule)
        {
            BaseHasPeftDescriptor = isModule && BaseHasPeftDescriptor(type, compilation, cancellationToken),
            Adaptable = adaptable,
            ForwardCalls = SiblingProjectionParser.ForwardCalls(type, cancellationToken),
            FuseDeclarations = fuseDeclarations.OrderBy(d => d.Order.File, StringComparer.Ordinal).ThenBy(d => d.Order.Position)
                .Select(d => d.Declaration).ToEquatableArray(),
            SiblingProjectionsByHand = SiblingProjectionParser.ImplementsByHand(type, cancellationToken),
        };
    }

    /// <summary>
    /// True when a base class declares a non-private <c>PeftDescriptor</c> property (a referenced PEFT module), or is a
    /// source class the generator emits for (its property is not in <paramref name="compilation"/> yet).
    /// </summary>
    private static bool BaseHasPeftDescriptor(INamedTypeSymbol type, Compilation compilation, CancellationToken cancellationToken)
    {
        for (var t = type.BaseType; t is not null; t = t.BaseType)
        {
            cancellationToken.ThrowIfCancellationRequested();
            foreach (var member in t.GetMembers(DescriptorPropertyName))
            {
                if (member is IPropertySymbol { IsStatic: false } && member.DeclaredAccessibility != Accessibility.Private) return true;
            }
            if (t.DeclaringSyntaxReferences.Length > 0 && DeclaresPeftAttributes(t))
            {
                var baseModel = Parse(t.OriginalDefinition, compilation, cancellationToken);
                if (baseModel is not null && PeftModelValidator.CanEmit(baseModel)) return true;
            }
        }
        return false;
    }

    private const string DescriptorPropertyName = "PeftDescriptor";

    /// <summary>True when the type carries [Freeze]/[Adaptable] or one of its fields/properties carries one of the five PEFT member attributes.</summary>
    private static bool DeclaresPeftAttributes(INamedTypeSymbol type)
    {
        if (type.GetAttributes().Any(a => Is(a, KnownNames.FreezeAttribute) || Is(a, KnownNames.AdaptableAttribute))) return true;
        foreach (var member in type.GetMembers())
        {
            if (member is not (IFieldSymbol or IPropertySymbol)) continue;
            foreach (var attribute in member.GetAttributes())
            {
                foreach (string name in KnownNames.AllAttributes)
                {
                    if (Is(attribute, name)) return true;
                }
            }
        }
        return false;
    }

    /// <summary>True when <paramref name="attribute"/> is one of ours (by metadata name).</summary>
    public static bool Is(AttributeData attribute, string metadataName)
        => attribute.AttributeClass?.ToDisplayString() == metadataName;

    /// <summary>Reads a method's attribute (any attribute in <see cref="MethodCatalogue"/>) with defaults applied; null for other
    /// attributes. Arguments come back in the spec's order, each marked as written or defaulted.</summary>
    public static AdapterModel? ParseAdapter(AttributeData attribute)
    {
        var spec = MethodCatalogue.ForAttribute(attribute.AttributeClass?.ToDisplayString());
        if (spec is null) return null;

        var ctorArgs = attribute.ConstructorArguments;
        var ctorParams = attribute.AttributeConstructor?.Parameters ?? default;
        TypedConstant? Find(string name)
        {
            if (!ctorParams.IsDefault)
            {
                for (int i = 0; i < ctorParams.Length && i < ctorArgs.Length; i++)
                {
                    if (ctorParams[i].Name == name) return ctorArgs[i];
                }
            }
            foreach (var pair in attribute.NamedArguments)
            {
                if (pair.Key == name) return pair.Value;
            }
            return null;
        }

        var values = new List<ArgumentValue>(spec.Arguments.Length);
        foreach (var argument in spec.Arguments)
        {
            var constant = Find(argument.Name);
            // A constructor argument is always present (its default filled in by the compiler); it is "written" when the
            // syntax names it, which the analyzer's locator checks. Named arguments are present only when written.
            object? value = constant is { Kind: not TypedConstantKind.Error } c && !c.IsNull ? c.Value : null;
            values.Add(argument.Kind switch
            {
                ArgumentKind.Int or ArgumentKind.Enum => argument.DefaultValue() with { Integer = ToLong(value) ?? argument.DefaultInteger, Written = constant is not null },
                ArgumentKind.Bool => argument.DefaultValue() with { Integer = value is bool b ? (b ? 1 : 0) : argument.DefaultInteger, Written = constant is not null },
                ArgumentKind.Double => argument.DefaultValue() with { Number = ToDouble(value, argument.DefaultNumber), Written = constant is not null },
                _ => argument.DefaultValue() with { Text = constant is { IsNull: true } ? null : value as string ?? argument.DefaultText, Written = constant is not null },
            });
        }

        string adapterName = attribute.NamedArguments.FirstOrDefault(p => p.Key == "Name").Value.Value as string ?? KnownNames.DefaultAdapterName;
        return new AdapterModel(spec.Name, adapterName, values.ToEquatableArray());
    }

    private static double ToDouble(object? value, double fallback) => value switch
    {
        double d => d,
        float f => f,
        int i => i,
        long l => l,
        decimal m => (double)m,
        _ => fallback,
    };

    private static HierarchyInfo BuildHierarchy(INamedTypeSymbol type)
    {
        var chain = new List<TypeDeclarationInfo>();
        for (var t = type; t is not null; t = t.ContainingType)
        {
            string typeParameters = t.TypeParameters.Length == 0
                ? string.Empty
                : "<" + string.Join(", ", t.TypeParameters.Select(p => EscapeKeyword(p.Name))) + ">";
            chain.Add(new TypeDeclarationInfo(Keyword(t), t.Name, typeParameters, t.TypeParameters.Length));
        }
        chain.Reverse();
        string ns = type.ContainingNamespace is { IsGlobalNamespace: false } n ? n.ToDisplayString() : string.Empty;
        return new HierarchyInfo(ns, chain.ToEquatableArray());
    }

    /// <summary>"@class" for a type parameter named with a keyword (the list is emitted verbatim).</summary>
    private static string EscapeKeyword(string name)
        => SyntaxFacts.GetKeywordKind(name) != SyntaxKind.None ? "@" + name : name;

    /// <summary>The keyword a partial declaration of <paramref name="type"/> must repeat (CS0261 otherwise).</summary>
    private static string Keyword(INamedTypeSymbol type) => type switch
    {
        { IsRecord: true, TypeKind: TypeKind.Struct } => "record struct",
        { IsRecord: true } => "record",
        { TypeKind: TypeKind.Struct } => "struct",
        { TypeKind: TypeKind.Interface } => "interface",
        _ => "class",
    };

    private static bool IsPartialChain(INamedTypeSymbol type, CancellationToken cancellationToken)
    {
        for (var t = type; t is not null; t = t.ContainingType)
        {
            bool partial = false;
            foreach (var reference in t.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax(cancellationToken) is TypeDeclarationSyntax declaration
                    && declaration.Modifiers.Any(SyntaxKind.PartialKeyword))
                {
                    partial = true;
                    break;
                }
            }
            if (!partial) return false;
        }
        return true;
    }

    /// <summary>True when <paramref name="type"/> is or derives from the class named <paramref name="displayName"/> (generic definitions match by name).</summary>
    public static bool DerivesFrom(ITypeSymbol? type, string displayName)
    {
        for (var t = type; t is not null; t = t.BaseType)
        {
            if (FullNameWithoutTypeArguments(t.OriginalDefinition) == displayName) return true;
        }
        return false;
    }

    private static string FullNameWithoutTypeArguments(ITypeSymbol type)
    {
        var parts = new List<string>();
        for (ISymbol? s = type; s is not null && s is not INamespaceSymbol; s = s.ContainingSymbol) parts.Add(s.Name);
        parts.Reverse();
        string ns = type.ContainingNamespace is { IsGlobalNamespace: false } n ? n.ToDisplayString() + "." : string.Empty;
        return ns + string.Join(".", parts);
    }

    private static ComponentKind ClassifyComponent(ITypeSymbol type)
    {
        if (DerivesFrom(type, KnownNames.Module)) return ComponentKind.Module;
        if (DerivesFrom(type, KnownNames.Parameter)) return ComponentKind.Parameter;
        // Strip the nullable annotation: "Tensor?" is still a buffer.
        if (type.WithNullableAnnotation(NullableAnnotation.NotAnnotated).ToDisplayString() == KnownNames.Tensor) return ComponentKind.Buffer;
        return ComponentKind.None;
    }

    private static bool AcceptsWrapper(ITypeSymbol type)
    {
        string display = type.WithNullableAnnotation(NullableAnnotation.NotAnnotated).ToDisplayString();
        return display == KnownNames.ModuleOfTensorToTensor || display == KnownNames.Module;
    }

    /// <summary>
    /// Source order: file path, then position. Positions alone would interleave the members of partial
    /// declarations in different files.
    /// </summary>
    private static (string File, int Position) DeclarationOrder(ISymbol symbol)
    {
        var location = symbol.Locations.FirstOrDefault(l => l.IsInSource);
        return location is null ? ("\uffff", int.MaxValue) : (location.SourceTree?.FilePath ?? string.Empty, location.SourceSpan.Start);
    }

    private static long? ToLong(object? value) => value switch
    {
        int i => i,
        long l => l,
        short s => s,
        byte b => b,
        uint u => u,
        _ => null,
    };

    /// <summary>Formats a double for C# source (invariant culture, round-trippable, always with a decimal point).</summary>
    public static string FormatDouble(double value)
    {
        if (double.IsNaN(value)) return "double.NaN";
        if (double.IsPositiveInfinity(value)) return "double.PositiveInfinity";
        if (double.IsNegativeInfinity(value)) return "double.NegativeInfinity";
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        if (text.IndexOfAny(new[] { '.', 'E', 'e' }) < 0) text += ".0";
        return text;
    }
}
