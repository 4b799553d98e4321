using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.HiRA;

/// <summary><c>[HiRA(rank, dropout)]</c> → <c>Peft.HiRAOptions</c>; r·(in + out) parameters (<c>Peft.HiRARules</c>, the
/// runtime's own copy).</summary>
internal sealed class HiRASpec : MethodSpec
{
    public override string Name => "HiRA";

    public override string OptionsType => "global::Peft.HiRAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (32), dropout (0.0): PEFT's HiraConfig defaults (<c>r</c>, <c>hira_dropout</c>). PEFT's HiRA has no
    /// scaling, so there is no alpha.</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", global::Peft.Generators.Rules.HiRARules.DefaultRank),
        ArgumentSpec.Double("dropout", "Dropout", 0.0));

    /// <summary>PEFT0001 rank, PEFT0003 dropout, PEFT0004 rank larger than min(in, out) (B A is already any matrix there).</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        double dropout = c.Adapter.Double("dropout");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (!(dropout >= 0 && dropout < 1)) c.Report(PeftDiagnosticIds.DropoutOutOfRange, "dropout", Name, ValidationContext.Format(dropout));
        if (rank > 0 && c.Layer is { InFeatures: long inFeatures, OutFeatures: long outFeatures }
            && rank > global::Peft.Generators.Rules.HiRARules.MaxRank(inFeatures, outFeatures))
        {
            c.Report(PeftDiagnosticIds.RankExceedsLayer, "rank", Name, ValidationContext.Format(rank), c.Member.Name,
                ValidationContext.Format(inFeatures), ValidationContext.Format(outFeatures));
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.HiRARules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"));
}
