using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.LoRA;

/// <summary><c>[LoRA(rank, alpha, dropout, UseRsLora, Init)]</c> → <c>Peft.LoRAOptions</c>; r·(in + out) parameters.</summary>
internal sealed class LoRASpec : MethodSpec
{
    public override string Name => "LoRA";

    public override string OptionsType => "global::Peft.LoRAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = LowRankSpec.Arguments;

    public override void Validate(ValidationContext context) => LowRankSpec.Validate(context);

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.LoRARules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"));
}

/// <summary>The arguments and rules every LoRA-style method (LoRA, DoRA, ...) shares: one copy.</summary>
internal static class LowRankSpec
{
    /// <summary>rank (8), alpha (8.0), dropout (0.0), UseRsLora (false), Init (KaimingUniform): PEFT's LoraConfig defaults.</summary>
    public static readonly ImmutableArray<ArgumentSpec> Arguments = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 8),
        ArgumentSpec.Double("alpha", "Alpha", 8.0),
        ArgumentSpec.Double("dropout", "Dropout", 0.0),
        ArgumentSpec.Bool("UseRsLora", "UseRsLora", false),
        ArgumentSpec.Enum("Init", "Init", "global::Peft.LoRAInit", "KaimingUniform", "Gaussian", "Random"));

    /// <summary>PEFT0001 rank, PEFT0002 alpha, PEFT0003 dropout, PEFT0004 rank larger than min(in, out).</summary>
    public static void Validate(ValidationContext c)
    {
        string attribute = c.Spec.Name;
        int rank = c.Adapter.Int("rank");
        double alpha = c.Adapter.Double("alpha");
        double dropout = c.Adapter.Double("dropout");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", attribute, ValidationContext.Format(rank));
        if (!(alpha > 0) || double.IsInfinity(alpha)) c.Report(PeftDiagnosticIds.AlphaNotPositive, "alpha", attribute, ValidationContext.Format(alpha));
        if (!(dropout >= 0 && dropout < 1)) c.Report(PeftDiagnosticIds.DropoutOutOfRange, "dropout", attribute, ValidationContext.Format(dropout));
        if (rank > 0 && c.Layer is { InFeatures: long inFeatures, OutFeatures: long outFeatures }
            && rank > global::Peft.Generators.Rules.LoRARules.MaxRank(inFeatures, outFeatures))
        {
            c.Report(PeftDiagnosticIds.RankExceedsLayer, "rank", attribute, ValidationContext.Format(rank), c.Member.Name,
                ValidationContext.Format(inFeatures), ValidationContext.Format(outFeatures));
        }
    }
}
