using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.VBLoRA;

/// <summary><c>[VBLoRA(rank, numVectors, vectorLength, TopK, Dropout, InitVectorBankBound, InitLogitsStd)]</c> →
/// <c>Peft.VBLoRAOptions</c>; r·N·(in + out)/L logits per layer plus the N·L bank once per adapter
/// (<c>Peft.VBLoRARules</c>). PEFT0022: the vector length must divide the layer's sizes; PEFT0023: TopK must be in
/// [1, numVectors].</summary>
internal sealed class VBLoRASpec : MethodSpec
{
    /// <summary>PEFT0022: the vector length does not divide a constant layer size.</summary>
    public const string VectorLengthId = "PEFT0022";

    /// <summary>PEFT0023: top-k is not between 1 and the number of vectors.</summary>
    public const string TopKId = "PEFT0023";

#if PEFT_ANALYZERS
    /// <summary>PEFT0022's descriptor (docs/diagnostics/PEFT0022.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor VectorLengthDoesNotDivide = new(
        "PEFT0022",
        "VB-LoRA vectorLength must divide both layer sizes",
        "[VBLoRA] on '{0}': vectorLength {1} must be positive and divide both in_features ({2}) and out_features ({3}); A and B are split into sub-vectors of that length",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0022"));

    /// <summary>PEFT0023's descriptor (docs/diagnostics/PEFT0023.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor TopKOutOfRange = new(
        "PEFT0023",
        "VB-LoRA TopK must be between 1 and numVectors",
        "[VBLoRA] on '{0}': TopK {1} must be between 1 and numVectors ({2}); each sub-vector mixes the TopK best of the bank's vectors",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0023"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(VectorLengthDoesNotDivide, TopKOutOfRange);
#endif

    public override string Name => "VBLoRA";

    public override string OptionsType => "global::Peft.VBLoRAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    /// <summary>rank (4), numVectors (256), vectorLength (256), TopK (2), Dropout (0.0), InitVectorBankBound (0.02),
    /// InitLogitsStd (0.1): PEFT's VBLoRAConfig defaults.</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 4),
        ArgumentSpec.Int("numVectors", "NumVectors", 256),
        ArgumentSpec.Int("vectorLength", "VectorLength", 256),
        ArgumentSpec.Int("TopK", "TopK", 2),
        ArgumentSpec.Double("Dropout", "Dropout", 0.0),
        ArgumentSpec.Double("InitVectorBankBound", "InitVectorBankBound", 0.02),
        ArgumentSpec.Double("InitLogitsStd", "InitLogitsStd", 0.1));

    /// <summary>PEFT0001 rank, PEFT0003 dropout, PEFT0022 vector length (against the sizes known at compile time), PEFT0023
    /// top-k.</summary>
    public override void Validate(ValidationContext c)
    {
        int rank = c.Adapter.Int("rank");
        int numVectors = c.Adapter.Int("numVectors");
        int vectorLength = c.Adapter.Int("vectorLength");
        int topK = c.Adapter.Int("TopK");
        double dropout = c.Adapter.Double("Dropout");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", Name, ValidationContext.Format(rank));
        if (!(dropout >= 0 && dropout < 1)) c.Report(PeftDiagnosticIds.DropoutOutOfRange, "Dropout", Name, ValidationContext.Format(dropout));
        long? inSize = c.Layer?.InFeatures, outSize = c.Layer?.OutFeatures;
        bool divides = vectorLength > 0 && (inSize is not long i || i % vectorLength == 0) && (outSize is not long o || o % vectorLength == 0);
        if (!divides)
        {
            c.Report(VectorLengthId, "vectorLength", c.Member.Name, ValidationContext.Format(vectorLength), ValidationContext.Format(inSize), ValidationContext.Format(outSize));
        }

        if (!global::Peft.Generators.Rules.VBLoRARules.TopKFits(topK, numVectors))
        {
            c.Report(TopKId, "TopK", c.Member.Name, ValidationContext.Format(topK), ValidationContext.Format(numVectors));
        }
    }

    public override bool IsCountable(AdapterModel adapter)
        => adapter.Int("rank") > 0 && adapter.Int("vectorLength") > 0 && global::Peft.Generators.Rules.VBLoRARules.TopKFits(adapter.Int("TopK"), adapter.Int("numVectors"));

    /// <summary>The logits; null when the vector length does not divide the sizes (PEFT0022 reports it).</summary>
    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
    {
        int vectorLength = adapter.Int("vectorLength");
        if (inFeatures % vectorLength != 0 || outFeatures % vectorLength != 0) return null;
        return global::Peft.Generators.Rules.VBLoRARules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"), adapter.Int("numVectors"), vectorLength);
    }

    /// <summary>The bank, N·L, once per adapter.</summary>
    public override long CountSharedParameters(AdapterModel adapter)
        => global::Peft.Generators.Rules.VBLoRARules.BankParameterCount(adapter.Int("numVectors"), adapter.Int("vectorLength"));
}
