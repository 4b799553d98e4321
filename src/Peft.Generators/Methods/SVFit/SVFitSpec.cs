using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.SVFit;

/// <summary><c>[SVFit(rank, EnergyThreshold)]</c> → <c>Peft.SVFitOptions</c>; r trainable parameters (the singular values;
/// <c>Peft.SVFitRules</c>, the runtime's own copy). With rank 0 the rank comes from the weight's spectrum, so the adapter
/// is not countable at compile time.</summary>
internal sealed class SVFitSpec : MethodSpec
{
    /// <summary>PEFT0026: SVFit's EnergyThreshold is outside (0, 1], or set together with an explicit rank.</summary>
    public const string EnergyThresholdId = "PEFT0026";

#if PEFT_ANALYZERS
    /// <summary>PEFT0026's descriptor (docs/diagnostics/PEFT0026.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor EnergyThreshold = new(
        "PEFT0026",
        "Invalid SVFit energy threshold",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0026"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(EnergyThreshold);
#endif

    public override string Name => "SVFit";

    public override string OptionsType => "global::Peft.SVFitOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (0: by energy), EnergyThreshold (0.99).</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 0),
        ArgumentSpec.Double("EnergyThreshold", "EnergyThreshold", global::Peft.Generators.Rules.SVFitRules.DefaultEnergyThreshold));

    /// <summary>PEFT0001 negative rank, PEFT0004 rank above min(in, out), PEFT0026 the energy threshold.</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        double threshold = c.Adapter.Double("EnergyThreshold");
        if (rank < 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (rank > 0 && c.Layer is { InFeatures: long inFeatures, OutFeatures: long outFeatures } && rank > System.Math.Min(inFeatures, outFeatures))
        {
            c.Report(PeftDiagnosticIds.RankExceedsLayer, "rank", Name, ValidationContext.Format(rank), c.Member.Name,
                ValidationContext.Format(inFeatures), ValidationContext.Format(outFeatures));
        }

        if (!global::Peft.Generators.Rules.SVFitRules.IsValidThreshold(threshold))
        {
            c.Report(EnergyThresholdId, "EnergyThreshold", Name, c.Member.Name,
                "EnergyThreshold is " + ValidationContext.Format(threshold) + "; use a fraction of the energy in (0, 1], e.g. 0.99 (the default)");
        }
        else if (rank > 0 && threshold != global::Peft.Generators.Rules.SVFitRules.DefaultEnergyThreshold)
        {
            c.Report(EnergyThresholdId, "EnergyThreshold", Name, c.Member.Name,
                "EnergyThreshold applies only with rank 0 (rank chosen by energy), but rank is " + ValidationContext.Format(rank) + "; remove one of them");
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.SVFitRules.ParameterCount(adapter.Int("rank"));
}
