using System;
using System.Collections.Generic;
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
/// PEFT0035–PEFT0037: constant arguments of a bottleneck adapter configuration (<c>new BottleneckConfig(...)</c>, or a preset
/// such as <c>BottleneckConfig.Compacter() with { ... }</c>) that <c>BottleneckConfig.Validate</c> would refuse at run time:
/// a value out of range (PEFT0035), an unknown <c>non_linearity</c> or <c>init_weights</c> (PEFT0036), and values that do
/// not go together (PEFT0037: nothing inserted, or PHM layers with the <c>mam_adapter</c> init). A value is known when it is
/// a constant, a constructor default, or a preset's field; anything else is left to the run-time check. Widths (a
/// reduction factor leaving no feature, a <c>phm_dim</c> that does not divide a width) depend on the model and are checked
/// when the adapters are inserted.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class BottleneckConfigAnalyzer : DiagnosticAnalyzer
{
    private const string ConfigType = "Peft.BottleneckConfig";

    private static readonly string[] Activations = ["relu", "swish", "silu", "gelu", "tanh"];
    private static readonly string[] Inits = ["mam_adapter", "bert"];

    /// <summary>The presets' fields that the rules read (BottleneckConfig's static methods).</summary>
    private static readonly Dictionary<string, Dictionary<string, object>> Presets = new(StringComparer.Ordinal)
    {
        ["Houlsby"] = Fields(true, false, "mam_adapter"),
        ["Pfeiffer"] = Fields(false, false, "mam_adapter"),
        ["ScaledParallel"] = Fields(false, false, "mam_adapter"),
        ["Parallel"] = Fields(false, false, "mam_adapter"),
        ["Compacter"] = Fields(true, true, "bert"),
        ["CompacterPlusPlus"] = Fields(false, true, "bert"),
    };

    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(
        InsertedMethodDescriptors.BottleneckArgumentOutOfRange, InsertedMethodDescriptors.BottleneckUnknownName, InsertedMethodDescriptors.BottleneckArgumentsConflict);

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.EnableConcurrentExecution();
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.RegisterOperationAction(AnalyzeCreation, OperationKind.ObjectCreation);
        context.RegisterOperationAction(AnalyzeWith, OperationKind.With);
    }

    /// <summary>The preset fields the combination rules read (every preset inserts after the feed-forward sub-layer).</summary>
    private static Dictionary<string, object> Fields(bool mh, bool phm, string init) => new(StringComparer.Ordinal)
    {
        ["MhAdapter"] = mh, ["OutputAdapter"] = true, ["PhmLayer"] = phm, ["InitWeights"] = init,
    };

    private static void AnalyzeCreation(OperationAnalysisContext context)
    {
        var creation = (IObjectCreationOperation)context.Operation;
        if (creation.Type?.ToDisplayString() != ConfigType) return;
        var values = new Dictionary<string, (object? Value, Location Location, bool Explicit)>(StringComparer.Ordinal);
        foreach (var argument in creation.Arguments)
        {
            if (argument.Parameter is null || !argument.Value.ConstantValue.HasValue) continue;
            bool isExplicit = argument.ArgumentKind != ArgumentKind.DefaultValue;
            values[Pascal(argument.Parameter.Name)] = (argument.Value.ConstantValue.Value, isExplicit ? argument.Syntax.GetLocation() : creation.Syntax.GetLocation(), isExplicit);
        }

        if (creation.Initializer is { } initializer) Assignments(initializer, values);
        Check(context, values);
    }

    private static void AnalyzeWith(OperationAnalysisContext context)
    {
        var with = (IWithOperation)context.Operation;
        if (with.Type?.ToDisplayString() != ConfigType) return;
        var values = new Dictionary<string, (object? Value, Location Location, bool Explicit)>(StringComparer.Ordinal);
        if (with.Operand is IInvocationOperation { TargetMethod: { IsStatic: true } preset } && preset.ContainingType?.ToDisplayString() == ConfigType
            && Presets.TryGetValue(preset.Name, out var fields))
        {
            foreach (var field in fields) values[field.Key] = (field.Value, with.Operand.Syntax.GetLocation(), false);
        }

        Assignments(with.Initializer, values);
        Check(context, values);
    }

    private static void Assignments(IObjectOrCollectionInitializerOperation initializer, Dictionary<string, (object? Value, Location Location, bool Explicit)> values)
    {
        foreach (var init in initializer.Initializers)
        {
            if (init is not ISimpleAssignmentOperation { Target: IPropertyReferenceOperation property } assignment) continue;
            if (assignment.Value.ConstantValue.HasValue) values[property.Property.Name] = (assignment.Value.ConstantValue.Value, assignment.Syntax.GetLocation(), true);
            else values.Remove(property.Property.Name);   // set to something the compiler cannot see: unknown now
        }
    }

    private static void Check(OperationAnalysisContext context, Dictionary<string, (object? Value, Location Location, bool Explicit)> values)
    {
        var set = DiagnosticDescriptors.WithDocs(context.Options);
        void Report(string id, Location location, params object[] args) => context.ReportDiagnostic(Diagnostic.Create(set[id], location, args));

        foreach (var (name, field, positive) in new[]
        {
            ("ReductionFactor", "reduction_factor", "must be a positive number (hidden size over bottleneck size, e.g. 16)"),
            ("PhmInitRange", "phm_init_range", "must be a positive finite number (the PHM rule's standard deviation, 1e-4 in Compacter)"),
        })
        {
            if (values.TryGetValue(name, out var v) && v.Explicit && Number(v.Value) is double d && (!(d > 0) || double.IsInfinity(d)))
            {
                Report(PeftDiagnosticIds.BottleneckArgumentOutOfRange, v.Location, field, Show(d), positive);
            }
        }

        if (values.TryGetValue("Scaling", out var s) && s.Explicit && Number(s.Value) is double scaling && (double.IsNaN(scaling) || double.IsInfinity(scaling)))
        {
            Report(PeftDiagnosticIds.BottleneckArgumentOutOfRange, s.Location, "scaling", Show(scaling), "must be a finite number");
        }

        foreach (var (name, field, what) in new[] { ("PhmDim", "phm_dim", "the number of Kronecker terms, 4 in Compacter"), ("PhmRank", "phm_rank", "the rank of each W_i = W_left_i W_right_i, 1 in Compacter") })
        {
            if (values.TryGetValue(name, out var v) && v.Explicit && v.Value is int i && i < 1)
            {
                Report(PeftDiagnosticIds.BottleneckArgumentOutOfRange, v.Location, field, i.ToString(CultureInfo.InvariantCulture), $"must be at least 1 ({what})");
            }
        }

        if (values.TryGetValue("NonLinearity", out var a) && a.Explicit && a.Value is string activation && !Activations.Contains(activation, StringComparer.Ordinal))
        {
            Report(PeftDiagnosticIds.BottleneckUnknownName, a.Location, "non_linearity", activation, string.Join(", ", Activations));
        }

        bool knownInit = true;
        if (values.TryGetValue("InitWeights", out var w) && w.Explicit && w.Value is string initName && !Inits.Contains(initName, StringComparer.Ordinal))
        {
            Report(PeftDiagnosticIds.BottleneckUnknownName, w.Location, "init_weights", initName, "mam_adapter (zero up projection, identity at init), bert");
            knownInit = false;
        }

        // Combinations: reported where one of the values is written, when both are known.
        if (values.TryGetValue("MhAdapter", out var mh) && values.TryGetValue("OutputAdapter", out var output) && (mh.Explicit || output.Explicit)
            && mh.Value is false && output.Value is false)
        {
            Report(PeftDiagnosticIds.BottleneckArgumentsConflict, output.Explicit ? output.Location : mh.Location,
                "mh_adapter and output_adapter are both false, so nothing would be inserted; set at least one");
        }

        if (knownInit && values.TryGetValue("PhmLayer", out var phm) && values.TryGetValue("InitWeights", out var init) && (phm.Explicit || init.Explicit)
            && phm.Value is true && init.Value is "mam_adapter")
        {
            Report(PeftDiagnosticIds.BottleneckArgumentsConflict, init.Explicit ? init.Location : phm.Location,
                "init_weights = \"mam_adapter\" with phm_layer = true: PHM layers initialise themselves (use init_weights = \"bert\", as BottleneckConfig.Compacter() does)");
        }
    }

    private static double? Number(object? value) => value switch
    {
        double d => d,
        float f => f,
        int i => i,
        long l => l,
        _ => null,
    };

    private static string Show(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static string Pascal(string name) => name.Length == 0 ? name : char.ToUpperInvariant(name[0]) + name.Substring(1);
}
