using System.Collections.Immutable;
using Peft.Generators.Model;

namespace Peft.Generators.Methods.BitFit;

/// <summary><c>[BitFit]</c> → <c>Peft.BitFitOptions</c>; a trainable copy of a Linear's or a norm's bias: out parameters.
/// PEFT0024 reports a layer built without a bias (nothing to train).</summary>
internal sealed class BitFitSpec : MethodSpec
{
    /// <summary>PEFT0024: the layer has no bias.</summary>
    public const string NoBiasId = "PEFT0024";

#if PEFT_ANALYZERS
    /// <summary>PEFT0024's descriptor (docs/diagnostics/PEFT0024.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor NoBias = new(
        "PEFT0024",
        "BitFit needs a layer with a bias",
        "[BitFit] on '{0}': the layer is built without a bias, so BitFit has nothing to train; build it with a bias (hasBias: true for Linear, bias: true and elementwise_affine: true for LayerNorm) or remove the attribute",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0024"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(NoBias);
#endif

    public override string Name => "BitFit";

    public override string OptionsType => "global::Peft.BitFitOptions";

    public override LayerKind LayerKinds => LayerKind.Linear | LayerKind.Norm;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray<ArgumentSpec>.Empty;

    public override void Validate(ValidationContext context)
    {
        if (context.Layer is { } layer && (layer.HasBias is false || layer.HasAffine is false)) context.Report(NoBiasId, string.Empty, context.Member.Name);
    }

    /// <summary>The layer's output size (a norm's size); 0 for a layer without a bias (reported by PEFT0024).</summary>
    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => layer.HasBias is false || layer.HasAffine is false ? 0 : global::Peft.Generators.Rules.BitFitRules.ParameterCount(outFeatures);
}
