using System.Collections.Immutable;
using Peft.Generators.Model;

namespace Peft.Generators.Methods.IA3;

/// <summary><c>[IA3(FeedForward, InitWeights)]</c> → <c>Peft.IA3Options</c>; one scale per output (or, feed-forward, per
/// input) feature. PEFT0019 warns when the scale does not start at ones.</summary>
internal sealed class IA3Spec : MethodSpec
{
    /// <summary>PEFT0019: an (IA)³ adapter initialised randomly does not start at the base model.</summary>
    public const string RandomInitId = "PEFT0019";

#if PEFT_ANALYZERS
    /// <summary>PEFT0019's descriptor (docs/diagnostics/PEFT0019.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor RandomInit = new(
        "PEFT0019",
        "IA3 adapter does not start at the base model",
        "[IA3] on '{0}' has InitWeights = false: its scale starts random, not at ones, so the adapted model does not start equal to the base model (PEFT's init_ia3_weights=False is meant for tests)",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Warning,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0019"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(RandomInit);
#endif

    public override string Name => "IA3";

    public override string OptionsType => "global::Peft.IA3Options";

    public override LayerKind LayerKinds => LayerKind.Linear;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Bool("FeedForward", "FeedForward", false),
        ArgumentSpec.Bool("InitWeights", "InitWeights", true));

    public override void Validate(ValidationContext context)
    {
        if (!context.Adapter.Bool("InitWeights")) context.Report(RandomInitId, "InitWeights", context.Member.Name);
    }

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.IA3Rules.ParameterCount(inFeatures, outFeatures, adapter.Bool("FeedForward"));
}
