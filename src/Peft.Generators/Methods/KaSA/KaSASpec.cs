using System.Collections.Immutable;
using Peft.Generators.Methods.LoRA;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.KaSA;

/// <summary><c>[KaSA(rank, alpha, dropout, UseRsLora, Beta, Gamma)]</c> → <c>Peft.KaSAOptions</c>; r·(in + out) + r parameters
/// (<c>Peft.KaSARules</c>, the runtime's own copy). LoRA's rules (PEFT0001-0004), PEFT0045 for a rank equal to min(in, out)
/// (nothing of the base would survive the truncation), PEFT0046 for a negative or non-finite Beta or Gamma.</summary>
internal sealed class KaSASpec : MethodSpec
{
    /// <summary>PEFT0045: KaSA's rank equals min(in, out) of a constant-size layer.</summary>
    public const string RankLeavesNothingId = "PEFT0045";

    /// <summary>PEFT0046: KaSA's Beta or Gamma is negative or not finite.</summary>
    public const string CoefficientId = "PEFT0046";

#if PEFT_ANALYZERS
    /// <summary>PEFT0045's descriptor (docs/diagnostics/PEFT0045.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor RankLeavesNothing = new(
        "PEFT0045",
        "KaSA rank leaves no base singular direction",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0045"));

    /// <summary>PEFT0046's descriptor (docs/diagnostics/PEFT0046.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor Coefficient = new(
        "PEFT0046",
        "Invalid KaSA regulariser weight",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0046"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(RankLeavesNothing, Coefficient);
#endif

    public override string Name => "KaSA";

    public override string OptionsType => "global::Peft.KaSAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (8), alpha (8.0), dropout (0.0), UseRsLora (false): PEFT's LoraConfig defaults; Beta (1e-4), Gamma (1e-3):
    /// PEFT's KasaConfig defaults.</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 8),
        ArgumentSpec.Double("alpha", "Alpha", 8.0),
        ArgumentSpec.Double("dropout", "Dropout", 0.0),
        ArgumentSpec.Bool("UseRsLora", "UseRsLora", false),
        ArgumentSpec.Double("Beta", "Beta", global::Peft.Generators.Rules.KaSARules.DefaultBeta),
        ArgumentSpec.Double("Gamma", "Gamma", global::Peft.Generators.Rules.KaSARules.DefaultGamma));

    public override void Validate(ValidationContext c)
    {
        LowRankSpec.Validate(c);
        int rank = c.Adapter.Int("rank");
        if (rank > 0 && c.Layer is { InFeatures: long inFeatures, OutFeatures: long outFeatures }
            && rank == System.Math.Min(inFeatures, outFeatures))
        {
            c.Report(RankLeavesNothingId, "rank", Name, c.Member.Name,
                "rank " + ValidationContext.Format(rank) + " equals min(in, out) of the layer (" + ValidationContext.Format(inFeatures) + " -> " + ValidationContext.Format(outFeatures)
                + "), so truncating the base to its min(in, out) - r largest singular directions leaves nothing; use a rank of at most " + ValidationContext.Format(rank - 1));
        }

        foreach (var argument in new[] { "Beta", "Gamma" })
        {
            double value = c.Adapter.Double(argument);
            if (!global::Peft.Generators.Rules.KaSARules.IsValidCoefficient(value))
            {
                c.Report(CoefficientId, argument, Name, c.Member.Name,
                    argument + " is " + ValidationContext.Format(value) + "; the regulariser weight must be finite and >= 0 (0 turns that penalty off)");
            }
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.KaSARules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"));
}
