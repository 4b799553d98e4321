using System.Collections.Immutable;
using Peft.Generators.Model;

namespace Peft.Generators.Methods.LNTuning;

/// <summary><c>[LNTuning]</c> → <c>Peft.LNTuningOptions</c>; a trainable copy of a norm's weight (and bias): d or 2·d
/// parameters. PEFT0020 reports a LayerNorm built without elementwise affine parameters (nothing to tune).</summary>
internal sealed class LNTuningSpec : MethodSpec
{
    /// <summary>PEFT0020: the norm has no parameters to tune.</summary>
    public const string NoAffineId = "PEFT0020";

#if PEFT_ANALYZERS
    /// <summary>PEFT0020's descriptor (docs/diagnostics/PEFT0020.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor NoAffine = new(
        "PEFT0020",
        "LNTuning needs a norm with parameters",
        "[LNTuning] on '{0}': the LayerNorm is built with elementwise_affine: false, so it has no weight or bias to tune; build it with elementwise_affine: true (the default) or remove the attribute",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0020"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(NoAffine);
#endif

    public override string Name => "LNTuning";

    public override string OptionsType => "global::Peft.LNTuningOptions";

    public override LayerKind LayerKinds => LayerKind.Norm;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray<ArgumentSpec>.Empty;

    public override void Validate(ValidationContext context)
    {
        if (context.Layer is { HasAffine: false }) context.Report(NoAffineId, string.Empty, context.Member.Name);
    }

    /// <summary>The norm's size, doubled when it has a bias; unknown when the bias flag is not a compile-time constant.</summary>
    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => layer.HasAffine is false ? 0
            : layer.HasBias is bool bias ? global::Peft.Generators.Rules.LNTuningRules.ParameterCount(inFeatures, bias) : null;
}
