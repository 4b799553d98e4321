using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using System.Linq;
using Peft.Generators.Emit;
using Peft.Generators.Methods;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators;

/// <summary>
/// Emits, for every partial TorchSharp module that declares PEFT attributes, a <c>*.Peft.g.cs</c> file that
/// implements <c>Peft.IPeftModule</c> and an <c>InitializePeft()</c> method (wrap adapted layers, register
/// members, apply trainability). See docs/ARCHITECTURE.md.
/// </summary>
/// <remarks>
/// Pipeline: one <c>ForAttributeWithMetadataName</c> per method of <see cref="MethodCatalogue"/> and per structural attribute
/// (<c>[Freeze]</c>, <c>[Trainable]</c>, <c>[Adaptable]</c>); syntax-only predicates, symbol work in the transform. A class
/// is parsed once: only the transform of its first annotated target (the class itself, else its first annotated member in
/// declaration order, and that member's first PEFT attribute) builds the equatable <see cref="PeftClassModel"/>, the others
/// return nothing. The streams are collected and combined in a loop, deduplicated per class, filtered by
/// <see cref="PeftModelValidator.CanEmit"/>, combined with the MSBuild switch <c>DisablePeftSourceGenerator</c> and emitted
/// one file per class. Invalid declarations produce no code: the analyzers report them.
/// </remarks>
[Generator(LanguageNames.CSharp)]
public sealed class PeftGenerator : IIncrementalGenerator
{
    /// <summary>The MSBuild property (made compiler-visible by Peft.Runtime.props) that turns the generator off.</summary>
    public const string DisableProperty = "build_property.DisablePeftSourceGenerator";

    /// <inheritdoc />
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        IncrementalValueProvider<bool> disabled = context.AnalyzerConfigOptionsProvider
            .Select(static (options, _) => IsDisabled(options.GlobalOptions.TryGetValue(DisableProperty, out var value) ? value : null))
            .WithTrackingName(PeftTrackingNames.Disabled);

        var streams = new List<IncrementalValuesProvider<PeftClassModel>>();
        foreach (var spec in MethodCatalogue.All)
        {
            streams.Add(ForAttribute(context, spec.AttributeMetadataName, PeftTrackingNames.ForAttribute(spec.Name), classTarget: false));
        }
        streams.Add(ForAttribute(context, KnownNames.TrainableAttribute, PeftTrackingNames.TrainableModels, classTarget: false));
        streams.Add(ForAttribute(context, KnownNames.FreezeAttribute, PeftTrackingNames.FreezeModels, classTarget: true));
        streams.Add(ForAttribute(context, KnownNames.AdaptableAttribute, PeftTrackingNames.AdaptableModels, classTarget: true));

        IncrementalValueProvider<ImmutableArray<PeftClassModel>> all = streams[0].Collect();
        for (int i = 1; i < streams.Count; i++)
        {
            all = all.Combine(streams[i].Collect()).Select(static (pair, _) => pair.Left.AddRange(pair.Right));
        }

        IncrementalValuesProvider<PeftClassModel> models = all
            .SelectMany(static (models, ct) => Distinct(models, ct))
            .WithTrackingName(PeftTrackingNames.ClassModels);

        IncrementalValuesProvider<PeftClassModel> emittable = models
            .Where(static m => PeftModelValidator.CanEmit(m))
            .WithTrackingName(PeftTrackingNames.EmittableModels);

        IncrementalValuesProvider<PeftClassModel> output = emittable
            .Combine(disabled)
            .Where(static pair => !pair.Right)
            .Select(static (pair, _) => pair.Left)
            .WithTrackingName(PeftTrackingNames.OutputModels);

        context.RegisterSourceOutput(output, static (spc, model) =>
        {
            spc.CancellationToken.ThrowIfCancellationRequested();
            spc.AddSource(model.Hierarchy.HintName, PeftEmitter.Emit(model, spc.CancellationToken));
        });
    }

    /// <summary>True when the MSBuild value turns the generator off ("true", any case, surrounding spaces allowed).</summary>
    internal static bool IsDisabled(string? value)
        => value is not null && string.Equals(value.Trim(), "true", StringComparison.OrdinalIgnoreCase);

    private static IncrementalValuesProvider<PeftClassModel> ForAttribute(
        IncrementalGeneratorInitializationContext context, string metadataName, string trackingName, bool classTarget)
        => context.SyntaxProvider
            .ForAttributeWithMetadataName(
                metadataName,
                classTarget
                    ? static (node, _) => IsMemberTarget(node) || IsClassTarget(node)
                    : static (node, _) => IsMemberTarget(node),
                (ctx, ct) => ParseTarget(ctx, metadataName, ct))
            .Where(static m => !m.Hierarchy.Equals(Skipped.Hierarchy))
            .WithTrackingName(trackingName);

    /// <summary>A field declarator or a property of a class (the attribute targets of member attributes).</summary>
    private static bool IsMemberTarget(SyntaxNode node)
        => node switch
        {
            VariableDeclaratorSyntax { Parent.Parent: FieldDeclarationSyntax { Parent: ClassDeclarationSyntax } } => true,
            PropertyDeclarationSyntax { Parent: ClassDeclarationSyntax } => true,
            _ => false,
        };

    /// <summary>A class declaration (the target of a class-level [Freeze] or [Adaptable]).</summary>
    private static bool IsClassTarget(SyntaxNode node) => node is ClassDeclarationSyntax;

    /// <summary>What a transform returns for a target that is not its class's first (an equatable placeholder, filtered out).</summary>
    private static readonly PeftClassModel Skipped = new(
        new HierarchyInfo(string.Empty, EquatableArray<TypeDeclarationInfo>.Empty), false, EquatableArray<MemberModel>.Empty, false, false);

    private static PeftClassModel ParseTarget(GeneratorAttributeSyntaxContext context, string metadataName, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        INamedTypeSymbol? type = context.TargetSymbol switch
        {
            INamedTypeSymbol named => named,
            IFieldSymbol field => field.ContainingType,
            IPropertySymbol property => property.ContainingType,
            _ => null,
        };
        if (type is null || !IsPrimaryTarget(type, context.TargetSymbol, metadataName)) return Skipped;
        return PeftParser.Parse(type, context.SemanticModel.Compilation, cancellationToken) ?? Skipped;
    }

    /// <summary>
    /// Whether (<paramref name="target"/>, attribute <paramref name="metadataName"/>) is the class's first annotated target:
    /// the class when it carries a class-level PEFT attribute (the first of them), else its first member in declaration
    /// order that carries a PEFT attribute (the first of them). Only that transform parses the class.
    /// </summary>
    internal static bool IsPrimaryTarget(INamedTypeSymbol type, ISymbol target, string metadataName)
    {
        string? first = FirstPeftAttribute(type);
        if (first is not null) return SymbolEqualityComparer.Default.Equals(target, type) && first == metadataName;

        ISymbol? primary = null;
        (string File, int Position) best = default;
        string? primaryAttribute = null;
        foreach (var member in type.GetMembers())
        {
            if (member is not (IFieldSymbol or IPropertySymbol) || member.IsStatic) continue;
            string? attribute = FirstPeftAttribute(member);
            if (attribute is null) continue;
            var location = member.Locations.FirstOrDefault(l => l.IsInSource);
            var order = location is null ? ("\uffff", int.MaxValue) : (location.SourceTree?.FilePath ?? string.Empty, location.SourceSpan.Start);
            if (primary is null || string.CompareOrdinal(order.Item1, best.File) < 0 || (order.Item1 == best.File && order.Item2 < best.Position))
            {
                primary = member;
                best = order;
                primaryAttribute = attribute;
            }
        }
        return SymbolEqualityComparer.Default.Equals(target, primary) && primaryAttribute == metadataName;
    }

    private static string? FirstPeftAttribute(ISymbol symbol)
    {
        foreach (var attribute in symbol.GetAttributes())
        {
            string? name = attribute.AttributeClass?.ToDisplayString();
            if (name is not null && Array.IndexOf(KnownNames.AllAttributes, name) >= 0) return name;
        }
        return null;
    }

    /// <summary>One model per class (a defence: <see cref="IsPrimaryTarget"/> already lets one transform per class parse).</summary>
    private static ImmutableArray<PeftClassModel> Distinct(ImmutableArray<PeftClassModel> models, CancellationToken cancellationToken)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var result = ImmutableArray.CreateBuilder<PeftClassModel>();
        foreach (var model in models)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (seen.Add(model.Hierarchy.HintName)) result.Add(model);
        }
        return result.ToImmutable();
    }
}

/// <summary>Names of the generator's tracked pipeline steps (for incremental-caching tests).</summary>
public static class PeftTrackingNames
{
    /// <summary>The <c>DisablePeftSourceGenerator</c> switch reduced to a bool.</summary>
    public const string Disabled = "PeftDisabled";

    /// <summary>Class models found through <c>[Trainable]</c>.</summary>
    public const string TrainableModels = "PeftTrainableModels";

    /// <summary>Class models found through <c>[Freeze]</c> (members and classes).</summary>
    public const string FreezeModels = "PeftFreezeModels";

    /// <summary>Class models found through the class-level <c>[Adaptable]</c>.</summary>
    public const string AdaptableModels = "PeftAdaptableModels";

    /// <summary>The streams combined, one model per class.</summary>
    public const string ClassModels = "PeftClassModels";

    /// <summary>Models that pass <c>PeftModelValidator.CanEmit</c>.</summary>
    public const string EmittableModels = "PeftEmittableModels";

    /// <summary>Emittable models when the generator is enabled: one generated file each.</summary>
    public const string OutputModels = "PeftOutputModels";

    /// <summary>The step of the stream of a method's attribute: <c>Peft{Name}Models</c> (e.g. <c>PeftLoRAModels</c>).</summary>
    /// <param name="methodName">The method's name in the catalogue.</param>
    /// <returns>The step name.</returns>
    public static string ForAttribute(string methodName) => "Peft" + methodName + "Models";

    /// <summary>Every step name, in pipeline order.</summary>
    public static ImmutableArray<string> All { get; } = ImmutableArray.Create(Disabled)
        .AddRange(MethodCatalogue.All.Select(m => ForAttribute(m.Name)))
        .AddRange(new[] { TrainableModels, FreezeModels, AdaptableModels, ClassModels, EmittableModels, OutputModels });
}
