using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.SoKA;

/// <summary><c>[SoKA(rank, Factor, EnergyThreshold)]</c> → <c>Peft.SoKAOptions</c>; r·(m·n + p·q) trainable parameters
/// (<c>Peft.SoKARules</c>, the runtime's own copy). With rank 0 the rank comes from the weight's Kronecker spectrum, so the
/// adapter is not countable at compile time.</summary>
internal sealed class SoKASpec : MethodSpec
{
    /// <summary>PEFT0047: SoKA's EnergyThreshold is outside (0, 1], or set together with an explicit rank.</summary>
    public const string EnergyThresholdId = "PEFT0047";

    /// <summary>PEFT0048: SoKA's rank exceeds the number of Kronecker components min(m·n, p·q) of a constant-size layer.</summary>
    public const string RankExceedsComponentsId = "PEFT0048";

#if PEFT_ANALYZERS
    /// <summary>PEFT0047's descriptor (docs/diagnostics/PEFT0047.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor EnergyThreshold = new(
        "PEFT0047",
        "Invalid SoKA energy threshold",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0047"));

    /// <summary>PEFT0048's descriptor (docs/diagnostics/PEFT0048.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor RankExceedsComponents = new(
        "PEFT0048",
        "SoKA rank larger than the layer's Kronecker components",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0048"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(EnergyThreshold, RankExceedsComponents);
#endif

    public override string Name => "SoKA";

    public override string OptionsType => "global::Peft.SoKAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (0: automatic), Factor (-1), EnergyThreshold (0.9).</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 0),
        ArgumentSpec.Int("Factor", "Factor", -1),
        ArgumentSpec.Double("EnergyThreshold", "EnergyThreshold", global::Peft.Generators.Rules.SoKARules.DefaultEnergyThreshold));

    /// <summary>PEFT0001 negative rank, PEFT0005 a factor that does not divide both sizes, PEFT0048 a rank above
    /// min(m·n, p·q), PEFT0047 the energy threshold.</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        int factor = c.Adapter.Int("Factor");
        double threshold = c.Adapter.Double("EnergyThreshold");
        if (rank < 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        long? inSize = c.Layer?.InFeatures, outSize = c.Layer?.OutFeatures;
        bool factorOk = factor < 0 || (factor > 0 && (inSize is not long i || i % factor == 0) && (outSize is not long o || o % factor == 0));
        if (!factorOk)
        {
            c.Report(PeftDiagnosticIds.FactorDoesNotDivide, "Factor", ValidationContext.Format(factor), c.Member.Name,
                ValidationContext.Format(inSize), ValidationContext.Format(outSize));
        }

        if (rank > 0 && factorOk && inSize is long inF && outSize is long outF && inF <= int.MaxValue && outF <= int.MaxValue)
        {
            long max = global::Peft.Generators.Rules.SoKARules.MaxRank((int)inF, (int)outF, factor);
            if (rank > max)
            {
                c.Report(RankExceedsComponentsId, "rank", Name, c.Member.Name,
                    "rank " + ValidationContext.Format(rank) + " is larger than the " + ValidationContext.Format(max) + " Kronecker components min(m·n, p·q) of the layer ("
                    + ValidationContext.Format(inF) + " -> " + ValidationContext.Format(outF) + "); use a rank of at most " + ValidationContext.Format(max) + ", or 0 to choose it by energy and elbow");
            }
        }

        if (!global::Peft.Generators.Rules.SoKARules.IsValidThreshold(threshold))
        {
            c.Report(EnergyThresholdId, "EnergyThreshold", Name, c.Member.Name,
                "EnergyThreshold is " + ValidationContext.Format(threshold) + "; use a fraction of the energy in (0, 1], e.g. 0.9 (the default)");
        }
        else if (rank > 0 && threshold != global::Peft.Generators.Rules.SoKARules.DefaultEnergyThreshold)
        {
            c.Report(EnergyThresholdId, "EnergyThreshold", Name, c.Member.Name,
                "EnergyThreshold applies only with rank 0 (rank chosen by energy and elbow), but rank is " + ValidationContext.Format(rank) + "; remove one of them");
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0 && adapter.Int("Factor") != 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => inFeatures > int.MaxValue || outFeatures > int.MaxValue || !global::Peft.Generators.Rules.SoKARules.IsValidFactor(inFeatures, outFeatures, adapter.Int("Factor"))
            ? null
            : global::Peft.Generators.Rules.SoKARules.ParameterCount((int)inFeatures, (int)outFeatures, adapter.Int("rank"), adapter.Int("Factor"));
}
