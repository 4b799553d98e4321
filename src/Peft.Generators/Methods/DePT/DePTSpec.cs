using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.DePT;

/// <summary><c>[DePT(virtualTokens, maxLength, rank, alpha, InitText)]</c> → <c>Peft.DePTOptions</c>; V·dim + S·r + r·dim
/// parameters (the prompt and the two table factors).</summary>
internal sealed class DePTSpec : MethodSpec
{
    /// <summary>PEFT0030: a DePT size (virtualTokens, maxLength) is not positive.</summary>
    public const string SizeNotPositiveId = "PEFT0030";

#if PEFT_ANALYZERS
    /// <summary>PEFT0030's descriptor (docs/diagnostics/PEFT0030.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor SizeNotPositive = new(
        SizeNotPositiveId,
        "DePT sizes must be positive",
        "[{0}] on '{1}': {2} must be positive, but is {3}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink(SizeNotPositiveId));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(SizeNotPositive);
#endif

    public override string Name => "DePT";

    public override string OptionsType => "global::Peft.DePTOptions";

    public override LayerKind LayerKinds => LayerKind.Embedding;

    /// <summary>virtualTokens (20), maxLength (256), rank (8), alpha (8.0): the DePT fork's PromptTuningLoRAConfig defaults
    /// (max_length, r, lora_alpha) and prompt tuning's token count.</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("virtualTokens", "VirtualTokens", 20),
        ArgumentSpec.Int("maxLength", "MaxLength", 256),
        ArgumentSpec.Int("rank", "Rank", 8),
        ArgumentSpec.Double("alpha", "Alpha", 8.0),
        ArgumentSpec.String("InitText", "InitText", null));

    /// <summary>PEFT0030 virtualTokens or maxLength not positive, PEFT0001 rank, PEFT0002 alpha.</summary>
    public override void Validate(ValidationContext c)
    {
        foreach (var size in new[] { "virtualTokens", "maxLength" })
        {
            int value = c.Adapter.Int(size);
            if (value <= 0) c.Report(SizeNotPositiveId, size, Name, c.Member.Name, size, ValidationContext.Format(value));
        }

        int rank = c.Adapter.Int("rank");
        double alpha = c.Adapter.Double("alpha");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (!(alpha > 0) || double.IsInfinity(alpha)) c.Report(PeftDiagnosticIds.AlphaNotPositive, "alpha", Name, ValidationContext.Format(alpha));
    }

    public override bool IsCountable(AdapterModel adapter)
        => adapter.Int("virtualTokens") > 0 && adapter.Int("maxLength") > 0 && adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
    {
        long rank = adapter.Int("rank");
        long prompt = global::Peft.Generators.Rules.SaturatingMath.Multiply(adapter.Int("virtualTokens"), outFeatures);
        long a = global::Peft.Generators.Rules.SaturatingMath.Multiply(adapter.Int("maxLength"), rank);
        long b = global::Peft.Generators.Rules.SaturatingMath.Multiply(rank, outFeatures);
        return global::Peft.Generators.Rules.SaturatingMath.Add(global::Peft.Generators.Rules.SaturatingMath.Add(prompt, a), b);
    }
}
