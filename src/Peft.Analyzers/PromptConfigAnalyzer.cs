using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;
using Peft.Analyzers.Diagnostics;
using Peft.Generators.Parsing;

namespace Peft.Analyzers;

/// <summary>
/// PEFT0049: constant fields of the configurations that act inside attention, <c>new PrefixTuningConfig(...)</c> (also MAM's
/// prefix) and <c>new AdaptionPromptConfig(...)</c>, or a <c>with { ... }</c> on one, that their <c>Validate</c> refuses at
/// run time: a prefix of fewer than 1 or more than 65,536 positions, an MLP width below 1 or given without
/// <c>Projection</c>, an adaption prompt of fewer than 1 or more than 4,096 tokens, or fewer than 1 adapted layer. A value
/// that is not a constant is left to the run-time check; <c>AdapterLayers</c> above the stack's depth needs the model and is
/// refused when the prompt is added.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class PromptConfigAnalyzer : DiagnosticAnalyzer
{
    private const string PrefixType = "Peft.PrefixTuningConfig";
    private const string AdaptionType = "Peft.AdaptionPromptConfig";

    /// <summary>PrefixTuningConfig.MaxVirtualTokens (PromptTuningOptions.MaxVirtualTokens).</summary>
    private const int MaxVirtualTokens = 1 << 16;

    /// <summary>AdaptionPromptConfig.MaxAdapterLen.</summary>
    private const int MaxAdapterLen = 4096;

    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(InsertedMethodDescriptors.PromptConfigOutOfRange);

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.EnableConcurrentExecution();
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.RegisterOperationAction(AnalyzeCreation, OperationKind.ObjectCreation);
        context.RegisterOperationAction(AnalyzeWith, OperationKind.With);
    }

    private static void AnalyzeCreation(OperationAnalysisContext context)
    {
        var creation = (IObjectCreationOperation)context.Operation;
        string? type = Known(creation.Type);
        if (type is null) return;
        var fields = new Dictionary<string, (object? Value, Location Location, bool Explicit)>();
        foreach (var argument in creation.Arguments)
        {
            if (argument.Parameter is null) continue;
            var value = Constant(argument.Value);
            if (!value.HasValue) continue;
            bool isExplicit = argument.ArgumentKind == ArgumentKind.Explicit;
            fields[argument.Parameter.Name] = (value.Value, isExplicit ? argument.Syntax.GetLocation() : creation.Syntax.GetLocation(), isExplicit);
        }

        if (creation.Initializer is { } initializer) Assignments(initializer, fields);
        Check(context, type, fields);
    }

    private static void AnalyzeWith(OperationAnalysisContext context)
    {
        var with = (IWithOperation)context.Operation;
        string? type = Known(with.Type);
        if (type is null) return;
        var fields = new Dictionary<string, (object? Value, Location Location, bool Explicit)>();
        Assignments(with.Initializer, fields);
        Check(context, type, fields);
    }

    private static string? Known(ITypeSymbol? type) => type?.ToDisplayString() switch
    {
        PrefixType => PrefixType,
        AdaptionType => AdaptionType,
        _ => null,
    };

    private static void Assignments(IObjectOrCollectionInitializerOperation initializer, Dictionary<string, (object? Value, Location Location, bool Explicit)> fields)
    {
        foreach (var item in initializer.Initializers)
        {
            if (item is not ISimpleAssignmentOperation { Target: IPropertyReferenceOperation property } assignment) continue;
            var value = Constant(assignment.Value);
            if (value.HasValue) fields[property.Property.Name] = (value.Value, assignment.Syntax.GetLocation(), true);
        }
    }

    /// <summary>The operand's constant, through conversions (an <c>int</c> given for an <c>int?</c>).</summary>
    private static Optional<object?> Constant(IOperation operand)
    {
        while (operand is IConversionOperation conversion) operand = conversion.Operand;
        return operand.ConstantValue;
    }

    private static void Check(OperationAnalysisContext context, string type, Dictionary<string, (object? Value, Location Location, bool Explicit)> fields)
    {
        var descriptors = DiagnosticDescriptors.WithDocs(context.Options);
        void Report(string name, string value, string fix)
        {
            var (_, location, _) = fields[name];
            string shortType = type.Substring("Peft.".Length);
            context.ReportDiagnostic(Diagnostic.Create(descriptors[PeftDiagnosticIds.PromptConfigOutOfRange], location, shortType, name, value, fix));
        }

        int? Int(string name) => fields.TryGetValue(name, out var f) && f.Explicit && f.Value is int i ? i : null;
        if (type == PrefixType)
        {
            if (Int("VirtualTokens") is { } tokens && (tokens < 1 || tokens > MaxVirtualTokens))
            {
                Report("VirtualTokens", Show(tokens), $"use 1 to {MaxVirtualTokens} prefix positions per layer (num_virtual_tokens; PEFT's examples use 20 to 30)");
            }

            if (Int("EncoderHiddenSize") is { } hidden)
            {
                bool projection = fields.TryGetValue("Projection", out var p) && p.Value is true;
                bool projectionKnown = fields.TryGetValue("Projection", out p) && p.Value is bool;
                if (hidden < 1) Report("EncoderHiddenSize", Show(hidden), "use a positive MLP width, or null for token_dim");
                else if (projectionKnown && !projection) Report("EncoderHiddenSize", Show(hidden), "the width belongs to the MLP reparameterisation; set Projection: true or drop EncoderHiddenSize");
            }
        }
        else
        {
            if (Int("AdapterLen") is { } length && (length < 1 || length > MaxAdapterLen))
            {
                Report("AdapterLen", Show(length), $"use 1 to {MaxAdapterLen} adapter tokens per attention (adapter_len; LLaMA-Adapter uses 10)");
            }

            if (Int("AdapterLayers") is { } layers && layers < 1)
            {
                Report("AdapterLayers", Show(layers), "use at least 1 (adapter_layers: how many blocks from the top get a prompt)");
            }
        }
    }

    private static string Show(int value) => value.ToString(CultureInfo.InvariantCulture);
}
