using System.Collections.Immutable;
using Peft.Generators.Model;

namespace Peft.Generators.Methods.SSF;

/// <summary><c>[SSF]</c> → <c>Peft.SSFOptions</c>; a scale and a shift per output feature of a Linear or a norm: 2·out
/// parameters. PEFT0025 warns on a layer built without a bias: the adapter works, but merging it is refused.</summary>
internal sealed class SSFSpec : MethodSpec
{
    /// <summary>PEFT0025: the layer has no bias to merge the shift into.</summary>
    public const string NoBiasId = "PEFT0025";

#if PEFT_ANALYZERS
    /// <summary>PEFT0025's descriptor (docs/diagnostics/PEFT0025.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor NoBias = new(
        "PEFT0025",
        "SSF on a layer without a bias cannot be merged",
        "[SSF] on '{0}': the layer is built without a bias, so the adapter's shift cannot be merged into it (b' = γ ⊙ b + β) and Merge() will be refused; build it with a bias (zeros) if you mean to merge",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Warning,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0025"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(NoBias);
#endif

    public override string Name => "SSF";

    public override string OptionsType => "global::Peft.SSFOptions";

    public override LayerKind LayerKinds => LayerKind.Linear | LayerKind.Norm;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray<ArgumentSpec>.Empty;

    public override void Validate(ValidationContext context)
    {
        if (context.Layer is { HasBias: false, HasAffine: not false }) context.Report(NoBiasId, string.Empty, context.Member.Name);
    }

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.SSFRules.ParameterCount(outFeatures);
}
