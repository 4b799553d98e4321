using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.LoHa;

/// <summary><c>[LoHa(rank, alpha, RankDropout, ModuleDropout)]</c> → <c>Peft.LoHaOptions</c>; 2·r·(in + out) parameters
/// (<c>Peft.LoHaRules</c>, the runtime's own copy).</summary>
internal sealed class LoHaSpec : MethodSpec
{
    public override string Name => "LoHa";

    public override string OptionsType => "global::Peft.LoHaOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (8), alpha (8.0), RankDropout (0.0), ModuleDropout (0.0): PEFT's LoHaConfig defaults.</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 8),
        ArgumentSpec.Double("alpha", "Alpha", 8.0),
        ArgumentSpec.Double("RankDropout", "RankDropout", 0.0),
        ArgumentSpec.Double("ModuleDropout", "ModuleDropout", 0.0));

    /// <summary>PEFT0001 rank, PEFT0002 alpha, PEFT0003 either dropout. No PEFT0004: the Hadamard product of two rank-r
    /// products has rank up to r², so a rank above min(in, out) / 2 is not wasted the way LoRA's is (PEFT accepts any r).</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        double alpha = c.Adapter.Double("alpha");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (!(alpha > 0) || double.IsInfinity(alpha)) c.Report(PeftDiagnosticIds.AlphaNotPositive, "alpha", Name, ValidationContext.Format(alpha));
        foreach (string dropout in new[] { "RankDropout", "ModuleDropout" })
        {
            double value = c.Adapter.Double(dropout);
            if (!(value >= 0 && value < 1)) c.Report(PeftDiagnosticIds.DropoutOutOfRange, dropout, Name, ValidationContext.Format(value));
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.LoHaRules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"));
}
