using System;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;
using Peft.Analyzers.Diagnostics;
using Peft.Generators.Parsing;

namespace Peft.Analyzers;

/// <summary>
/// PEFT0040 to PEFT0042: constant arguments of <c>new MeftConfig(...)</c> that <c>MeftConfig.Validate</c> would refuse at run
/// time: the unsupported MEFT₃ variant, a zero or non-finite λ/β (the reversible backward divides by them), and a bottleneck
/// below 1, a negative <c>NumRevLayers</c>, a dropout outside [0, 1) or an unknown activation. Arguments that are not
/// constants are left to the run-time check.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class MeftConfigAnalyzer : DiagnosticAnalyzer
{
    private const string ConfigType = "Peft.MeftConfig";
    private static readonly string[] Activations = { "gelu", "relu", "silu", "tanh" };

    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(
        InsertedMethodDescriptors.MeftVariantUnsupported, InsertedMethodDescriptors.MeftFactorZero, InsertedMethodDescriptors.MeftValueOutOfRange);

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.EnableConcurrentExecution();
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.RegisterOperationAction(Analyze, OperationKind.ObjectCreation);
    }

    private static void Analyze(OperationAnalysisContext context)
    {
        var creation = (IObjectCreationOperation)context.Operation;
        if (creation.Type?.ToDisplayString() != ConfigType) return;
        var descriptors = DiagnosticDescriptors.WithDocs(context.Options);
        foreach (var argument in creation.Arguments)
        {
            if (argument.ArgumentKind != ArgumentKind.Explicit || argument.Parameter is null) continue;
            var operand = argument.Value;
            while (operand is IConversionOperation conversion) operand = conversion.Operand;   // int -> int? (NumRevLayers)
            var constant = operand.ConstantValue;
            if (!constant.HasValue) continue;
            var location = argument.Syntax.GetLocation();
            string name = argument.Parameter.Name;
            object? value = constant.Value;
            switch (name)
            {
                case "Variant" when value is int variant && variant == 2:
                    context.ReportDiagnostic(Diagnostic.Create(descriptors[PeftDiagnosticIds.MeftVariantUnsupported], location));
                    break;
                case "X1Factor" or "X2Factor" when AsDouble(value) is { } factor && (factor == 0 || double.IsNaN(factor) || double.IsInfinity(factor)):
                    context.ReportDiagnostic(Diagnostic.Create(descriptors[PeftDiagnosticIds.MeftFactorZero], location, name, Show(factor)));
                    break;
                case "AdapterBottleneckDim" when value is int dim && dim < 1:
                    Report(context, descriptors, location, name, Show(dim), "the adapters need a bottleneck of at least 1 feature (the authors use 8)");
                    break;
                case "NumRevLayers" when value is int layers && layers < 0:
                    Report(context, descriptors, location, name, Show(layers), "use 0 or more reversible blocks (null: every block)");
                    break;
                case "AdapterDropout" when AsDouble(value) is { } dropout && !(dropout >= 0 && dropout < 1):
                    Report(context, descriptors, location, name, Show(dropout), "a dropout probability must be in [0, 1)");
                    break;
                case "HiddenAct" when value is string act && !Activations.Contains(act, StringComparer.Ordinal):
                    Report(context, descriptors, location, name, "\"" + act + "\"", "use one of " + string.Join(", ", Activations));
                    break;
            }
        }
    }

    private static void Report(OperationAnalysisContext context, DescriptorSet descriptors, Location location, string name, string value, string fix) =>
        context.ReportDiagnostic(Diagnostic.Create(descriptors[PeftDiagnosticIds.MeftValueOutOfRange], location, name, value, fix));

    private static double? AsDouble(object? value) => value switch
    {
        double d => d,
        float f => f,
        int i => i,
        long l => l,
        _ => null,
    };

    private static string Show(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
