using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.LoLDU;

/// <summary><c>[LoLDU(rank, alpha)]</c> → <c>Peft.LoLDUOptions</c>; r + 1 trainable parameters (the diagonal and the scaling
/// factor; <c>Peft.LoLDURules</c>, the runtime's own copy).</summary>
internal sealed class LoLDUSpec : MethodSpec
{
    public override string Name => "LoLDU";

    public override string OptionsType => "global::Peft.LoLDUOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (8), alpha (1.0: the official code's lora_alpha).</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 8),
        ArgumentSpec.Double("alpha", "Alpha", 1.0));

    /// <summary>PEFT0001 rank, PEFT0002 alpha, PEFT0004 rank above min(in, out) (the LU has min(in, out) pivots).</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        double alpha = c.Adapter.Double("alpha");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (!(alpha > 0) || double.IsInfinity(alpha)) c.Report(PeftDiagnosticIds.AlphaNotPositive, "alpha", Name, ValidationContext.Format(alpha));
        if (rank > 0 && c.Layer is { InFeatures: long inFeatures, OutFeatures: long outFeatures } && rank > System.Math.Min(inFeatures, outFeatures))
        {
            c.Report(PeftDiagnosticIds.RankExceedsLayer, "rank", Name, ValidationContext.Format(rank), c.Member.Name,
                ValidationContext.Format(inFeatures), ValidationContext.Format(outFeatures));
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.LoLDURules.ParameterCount(adapter.Int("rank"));
}
