using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.VeRA;

/// <summary><c>[VeRA(rank, Dropout, DInitial, ProjectionPrngKey, SaveProjection)]</c> → <c>Peft.VeRAOptions</c>; r + out
/// trainable parameters per layer (<c>Peft.VeRARules</c>, the runtime's own copy; the shared projections are frozen).</summary>
internal sealed class VeRASpec : MethodSpec
{
    public override string Name => "VeRA";

    public override string OptionsType => "global::Peft.VeRAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (256), Dropout (0.0), DInitial (0.1), ProjectionPrngKey (0), SaveProjection (true): PEFT's VeraConfig
    /// defaults.</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 256),
        ArgumentSpec.Double("Dropout", "Dropout", 0.0),
        ArgumentSpec.Double("DInitial", "DInitial", 0.1),
        ArgumentSpec.Int("ProjectionPrngKey", "ProjectionPrngKey", 0),
        ArgumentSpec.Bool("SaveProjection", "SaveProjection", true));

    /// <summary>PEFT0001 rank, PEFT0003 dropout. No PEFT0004: the projections are shared and sized by the largest layer, and
    /// PEFT accepts any r (its default 256 exceeds many layers' sizes).</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        double dropout = c.Adapter.Double("Dropout");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (!(dropout >= 0 && dropout < 1)) c.Report(PeftDiagnosticIds.DropoutOutOfRange, "Dropout", Name, ValidationContext.Format(dropout));
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.VeRARules.ParameterCount(outFeatures, adapter.Int("rank"));
}
