using System.Collections.Immutable;
using System.Globalization;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;
using Peft.Analyzers.Diagnostics;
using Peft.Generators.Parsing;

namespace Peft.Analyzers;

/// <summary>
/// PEFT0033 and PEFT0034: constant LoFiT arguments the run time would refuse. PEFT0033: <c>new LoFiTConfig(...)</c> with a
/// negative or non-finite <c>L1Lambda</c> or <c>InitStd</c> (<c>LoFiTConfig.Validate</c>). PEFT0034: <c>SelectHeads(headFraction)</c>
/// outside (0, 1] or <c>SelectHeads(topK)</c> below 1 (the upper bound of <c>topK</c>, the model's head count, is known only at
/// run time). Arguments that are not constants are left to the run-time checks.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class LoFiTAnalyzer : DiagnosticAnalyzer
{
    private const string ConfigType = "Peft.LoFiTConfig";
    private const string MethodsType = "Peft.LoFiT";

    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(
        InsertedMethodDescriptors.LoFiTValueOutOfRange, InsertedMethodDescriptors.LoFiTHeadCountOutOfRange);

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.EnableConcurrentExecution();
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.RegisterOperationAction(AnalyzeCreation, OperationKind.ObjectCreation);
        context.RegisterOperationAction(AnalyzeInvocation, OperationKind.Invocation);
    }

    private static void AnalyzeCreation(OperationAnalysisContext context)
    {
        var creation = (IObjectCreationOperation)context.Operation;
        if (creation.Type?.ToDisplayString() != ConfigType) return;
        foreach (var argument in creation.Arguments)
        {
            if (argument.ArgumentKind != ArgumentKind.Explicit || argument.Parameter is null) continue;
            if (argument.Parameter.Name is not ("L1Lambda" or "InitStd") || Constant(argument) is not { } value) continue;
            if (value >= 0 && !double.IsInfinity(value)) continue;
            string fix = argument.Parameter.Name == "L1Lambda"
                ? "the L1 weight must be a finite number of at least 0 (the paper uses about 1e-3 to 5e-3)"
                : "the initialisation scale must be a finite number of at least 0 (the authors use 1e-3)";
            context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.WithDocs(context.Options)[PeftDiagnosticIds.LoFiTValueOutOfRange],
                argument.Syntax.GetLocation(), argument.Parameter.Name, Show(value), fix));
        }
    }

    private static void AnalyzeInvocation(OperationAnalysisContext context)
    {
        var invocation = (IInvocationOperation)context.Operation;
        var method = invocation.TargetMethod;
        if (method.Name != "SelectHeads" || method.ContainingType?.ToDisplayString() != MethodsType) return;
        foreach (var argument in invocation.Arguments)
        {
            if (argument.ArgumentKind != ArgumentKind.Explicit || argument.Parameter is null || Constant(argument) is not { } value) continue;
            string? fix = argument.Parameter.Name switch
            {
                "headFraction" when !(value > 0 && value <= 1) => "the share of heads kept must be in (0, 1] (the paper keeps 0.1)",
                "topK" when value < 1 => "keep at least 1 head (at most the model's heads, checked at run time)",
                _ => null,
            };
            if (fix is null) continue;
            context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.WithDocs(context.Options)[PeftDiagnosticIds.LoFiTHeadCountOutOfRange],
                argument.Syntax.GetLocation(), argument.Parameter.Name, Show(value), fix));
        }
    }

    private static double? Constant(IArgumentOperation argument)
    {
        var operand = argument.Value;
        while (operand is IConversionOperation conversion) operand = conversion.Operand;
        if (!operand.ConstantValue.HasValue) return null;
        return operand.ConstantValue.Value switch
        {
            double d => d,
            float f => f,
            int i => i,
            long l => l,
            _ => null,
        };
    }

    private static string Show(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
