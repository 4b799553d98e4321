using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.RandLoRA;

/// <summary><c>[RandLoRA(rank, alpha, Dropout, ProjectionPrngKey, SaveProjection, Sparse, VerySparse)]</c> →
/// <c>Peft.RandLoRAOptions</c>; r·n + n·min(in, out) trainable parameters per layer (<c>Peft.RandLoRARules</c>, the
/// runtime's own copy; the shared bases are frozen).</summary>
internal sealed class RandLoRASpec : MethodSpec
{
    public override string Name => "RandLoRA";

    public override string OptionsType => "global::Peft.RandLoRAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (32), alpha (640), Dropout (0.0), ProjectionPrngKey (0), SaveProjection (true), Sparse (false),
    /// VerySparse (false): PEFT's RandLoraConfig defaults.</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 32),
        ArgumentSpec.Double("alpha", "Alpha", 640.0),
        ArgumentSpec.Double("Dropout", "Dropout", 0.0),
        ArgumentSpec.Int("ProjectionPrngKey", "ProjectionPrngKey", 0),
        ArgumentSpec.Bool("SaveProjection", "SaveProjection", true),
        ArgumentSpec.Bool("Sparse", "Sparse", false),
        ArgumentSpec.Bool("VerySparse", "VerySparse", false));

    /// <summary>PEFT0001 rank, PEFT0002 alpha, PEFT0003 dropout. No PEFT0004: a rank above min(in, out) gives one basis, which
    /// PEFT accepts.</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        double alpha = c.Adapter.Double("alpha");
        double dropout = c.Adapter.Double("Dropout");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (!(alpha > 0) || double.IsInfinity(alpha)) c.Report(PeftDiagnosticIds.AlphaNotPositive, "alpha", Name, ValidationContext.Format(alpha));
        if (!(dropout >= 0 && dropout < 1)) c.Report(PeftDiagnosticIds.DropoutOutOfRange, "Dropout", Name, ValidationContext.Format(dropout));
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.RandLoRARules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"));
}
