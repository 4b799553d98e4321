using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Emit;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators;

/// <summary>
/// Emits, for every partial TorchSharp module that declares PEFT attributes, a <c>*.Peft.g.cs</c> file that
/// implements <c>Peft.IPeftModule</c> and an <c>InitializePeft()</c> method (wrap adapted layers, register
/// members, apply trainability). See docs/ARCHITECTURE.md.
/// </summary>
/// <remarks>
/// Pipeline: one <c>ForAttributeWithMetadataName</c> per attribute (syntax-only predicate, symbol work in the
/// transform, which returns an equatable <see cref="PeftClassModel"/>), the six streams collected, combined and
/// deduplicated per class, filtered by <see cref="PeftModelValidator.CanEmit"/>, combined with the MSBuild switch
/// <c>DisablePeftSourceGenerator</c> and emitted one file per class. Invalid declarations produce no code:
/// the analyzers report them.
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

        var lora = ForMemberAttribute(context, KnownNames.LoRAAttribute, PeftTrackingNames.LoRAModels);
        var kronecker = ForMemberAttribute(context, KnownNames.KroneckerAttribute, PeftTrackingNames.KroneckerModels);
        var promptTune = ForMemberAttribute(context, KnownNames.PromptTuneAttribute, PeftTrackingNames.PromptTuneModels);
        var trainable = ForMemberAttribute(context, KnownNames.TrainableAttribute, PeftTrackingNames.TrainableModels);
        var freeze = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                KnownNames.FreezeAttribute,
                static (node, _) => IsMemberTarget(node) || IsClassTarget(node),
                static (ctx, ct) => ParseTarget(ctx, ct))
            .Where(static m => m is not null)
            .Select(static (m, _) => m!)
            .WithTrackingName(PeftTrackingNames.FreezeModels);
        var adaptable = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                KnownNames.AdaptableAttribute,
                static (node, _) => IsClassTarget(node),
                static (ctx, ct) => ParseTarget(ctx, ct))
            .Where(static m => m is not null)
            .Select(static (m, _) => m!)
            .WithTrackingName(PeftTrackingNames.AdaptableModels);

        IncrementalValuesProvider<PeftClassModel> models = lora.Collect()
            .Combine(kronecker.Collect())
            .Combine(promptTune.Collect())
            .Combine(trainable.Collect())
            .Combine(freeze.Collect())
            .Combine(adaptable.Collect())
            .SelectMany(static (all, ct) => Distinct(ct,
                all.Left.Left.Left.Left.Left,
                all.Left.Left.Left.Left.Right,
                all.Left.Left.Left.Right,
                all.Left.Left.Right,
                all.Left.Right,
                all.Right))
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

    private static IncrementalValuesProvider<PeftClassModel> ForMemberAttribute(
        IncrementalGeneratorInitializationContext context, string metadataName, string trackingName)
        => context.SyntaxProvider
            .ForAttributeWithMetadataName(
                metadataName,
                static (node, _) => IsMemberTarget(node),
                static (ctx, ct) => ParseTarget(ctx, ct))
            .Where(static m => m is not null)
            .Select(static (m, _) => m!)
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

    private static PeftClassModel? ParseTarget(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        INamedTypeSymbol? type = context.TargetSymbol switch
        {
            INamedTypeSymbol named => named,
            IFieldSymbol field => field.ContainingType,
            IPropertySymbol property => property.ContainingType,
            _ => null,
        };
        if (type is null) return null;
        return PeftParser.Parse(type, context.SemanticModel.Compilation, cancellationToken);
    }

    /// <summary>
    /// One model per class: a class with several annotated members (or several attributes) appears once per
    /// attribute target in the streams; the first occurrence in a stable order wins. Equal hint names mean
    /// the same class (the parser builds the model from the type symbol, not from the attribute).
    /// </summary>
    private static ImmutableArray<PeftClassModel> Distinct(CancellationToken cancellationToken, params ImmutableArray<PeftClassModel>[] streams)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var result = ImmutableArray.CreateBuilder<PeftClassModel>();
        foreach (var stream in streams)
        {
            cancellationToken.ThrowIfCancellationRequested();
            foreach (var model in stream)
            {
                if (seen.Add(model.Hierarchy.HintName)) result.Add(model);
            }
        }
        return result.ToImmutable();
    }
}

/// <summary>Names of the generator's tracked pipeline steps (for incremental-caching tests).</summary>
public static class PeftTrackingNames
{
    /// <summary>The <c>DisablePeftSourceGenerator</c> switch reduced to a bool.</summary>
    public const string Disabled = "PeftDisabled";

    /// <summary>Class models found through <c>[LoRA]</c>.</summary>
    public const string LoRAModels = "PeftLoRAModels";

    /// <summary>Class models found through <c>[Kronecker]</c>.</summary>
    public const string KroneckerModels = "PeftKroneckerModels";

    /// <summary>Class models found through <c>[PromptTune]</c>.</summary>
    public const string PromptTuneModels = "PeftPromptTuneModels";

    /// <summary>Class models found through <c>[Trainable]</c>.</summary>
    public const string TrainableModels = "PeftTrainableModels";

    /// <summary>Class models found through <c>[Freeze]</c> (members and classes).</summary>
    public const string FreezeModels = "PeftFreezeModels";

    /// <summary>Class models found through the class-level <c>[Adaptable]</c>.</summary>
    public const string AdaptableModels = "PeftAdaptableModels";

    /// <summary>The six streams combined, one model per class.</summary>
    public const string ClassModels = "PeftClassModels";

    /// <summary>Models that pass <c>PeftModelValidator.CanEmit</c>.</summary>
    public const string EmittableModels = "PeftEmittableModels";

    /// <summary>Emittable models when the generator is enabled: one generated file each.</summary>
    public const string OutputModels = "PeftOutputModels";

    /// <summary>Every step name, in pipeline order.</summary>
    public static readonly ImmutableArray<string> All = ImmutableArray.Create(
        Disabled, LoRAModels, KroneckerModels, PromptTuneModels, TrainableModels, FreezeModels, AdaptableModels,
        ClassModels, EmittableModels, OutputModels);
}
