using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.Kronecker;

/// <summary><c>[Kronecker(rank, alpha, Factor, DecomposeBoth, FullFactors)]</c> → <c>Peft.KroneckerOptions</c>; counts by PEFT's LoKr rule
/// (<c>Peft.KroneckerRules</c>, the runtime's own copy).</summary>
internal sealed class KroneckerSpec : MethodSpec
{
    public override string Name => "Kronecker";

    public override string OptionsType => "global::Peft.KroneckerOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 8),
        ArgumentSpec.Double("alpha", "Alpha", 8.0),
        ArgumentSpec.Int("Factor", "Factor", -1),
        ArgumentSpec.Bool("DecomposeBoth", "DecomposeBoth", false),
        ArgumentSpec.Bool("FullFactors", "FullFactors", false));

    /// <summary>PEFT0001 rank, PEFT0002 alpha, PEFT0005 a factor that does not divide the layer's sizes (-1 is automatic).</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        double alpha = c.Adapter.Double("alpha");
        int factor = c.Adapter.Int("Factor");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (!(alpha > 0) || double.IsInfinity(alpha)) c.Report(PeftDiagnosticIds.AlphaNotPositive, "alpha", Name, ValidationContext.Format(alpha));

        // Factor -1 (or any negative value) is PEFT's automatic factorization; 0 divides nothing.
        if (factor >= 0)
        {
            long? inSize = c.Layer?.InFeatures, outSize = c.Layer?.OutFeatures;
            bool divides = factor > 0
                && (inSize is not long i || i % factor == 0)
                && (outSize is not long o || o % factor == 0);
            if (!divides)
            {
                c.Report(PeftDiagnosticIds.FactorDoesNotDivide, "Factor", ValidationContext.Format(factor), c.Member.Name,
                    ValidationContext.Format(inSize), ValidationContext.Format(outSize));
            }
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0 && adapter.Int("Factor") != 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.KroneckerRules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"), adapter.Int("Factor"), adapter.Bool("DecomposeBoth"), adapter.Bool("FullFactors"));
}
