using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.PTuning;

/// <summary><c>[PTuning(virtualTokens, encoderHiddenSize, EncoderType, EncoderNumLayers, EncoderDropout)]</c> →
/// <c>Peft.PTuningOptions</c>; the trainable count is the encoder's (table V·d, then the MLP's three linear layers, or the
/// bidirectional LSTM and its two-layer MLP), h being the embedding size when encoderHiddenSize is 0.</summary>
internal sealed class PTuningSpec : MethodSpec
{
    /// <summary>PEFT0031: a P-tuning encoder size (encoderHiddenSize negative, EncoderNumLayers not positive) is out of range.</summary>
    public const string EncoderSizeId = "PEFT0031";

    /// <summary>PEFT0032: EncoderNumLayers or EncoderDropout set with the MLP encoder, which has neither.</summary>
    public const string MlpIgnoresId = "PEFT0032";

    private const int Lstm = 1;

#if PEFT_ANALYZERS
    /// <summary>PEFT0031's descriptor (docs/diagnostics/PEFT0031.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor EncoderSize = new(
        EncoderSizeId,
        "P-tuning encoder size out of range",
        "[{0}] on '{1}': {2} must be {3}, but is {4}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink(EncoderSizeId));

    /// <summary>PEFT0032's descriptor (docs/diagnostics/PEFT0032.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor MlpIgnores = new(
        MlpIgnoresId,
        "P-tuning MLP encoder setting that only the LSTM has",
        "[{0}] on '{1}': {2} is {3}, but the MLP encoder has PEFT's fixed three linear layers and no dropout; remove it or set EncoderType = PromptEncoderType.LSTM",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink(MlpIgnoresId));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(EncoderSize, MlpIgnores);
#endif

    public override string Name => "PTuning";

    public override string OptionsType => "global::Peft.PTuningOptions";

    public override LayerKind LayerKinds => LayerKind.Embedding;

    /// <summary>virtualTokens (20), encoderHiddenSize (0: the embedding size, PEFT's None), EncoderType (MLP),
    /// EncoderNumLayers (2), EncoderDropout (0.0): PEFT's PromptEncoderConfig defaults.</summary>
    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("virtualTokens", "VirtualTokens", 20),
        ArgumentSpec.Int("encoderHiddenSize", "EncoderHiddenSize", 0),
        ArgumentSpec.Enum("EncoderType", "EncoderType", "global::Peft.PromptEncoderType", "MLP", "LSTM"),
        ArgumentSpec.Int("EncoderNumLayers", "EncoderNumLayers", 2),
        ArgumentSpec.Double("EncoderDropout", "EncoderDropout", 0.0));

    /// <summary>PEFT0014 virtualTokens, PEFT0031 encoderHiddenSize or EncoderNumLayers, PEFT0003 EncoderDropout outside [0, 1),
    /// PEFT0032 EncoderNumLayers or EncoderDropout with the MLP.</summary>
    public override void Validate(ValidationContext c)
    {
        int tokens = c.Adapter.Int("virtualTokens");
        if (tokens <= 0) c.Report(PeftDiagnosticIds.VirtualTokensNotPositive, "virtualTokens", Name, ValidationContext.Format(tokens));
        int hidden = c.Adapter.Int("encoderHiddenSize");
        if (hidden < 0) c.Report(EncoderSizeId, "encoderHiddenSize", Name, c.Member.Name, "encoderHiddenSize", "positive (or 0 for the embedding size)", ValidationContext.Format(hidden));
        int layers = c.Adapter.Int("EncoderNumLayers");
        if (layers <= 0) c.Report(EncoderSizeId, "EncoderNumLayers", Name, c.Member.Name, "EncoderNumLayers", "positive", ValidationContext.Format(layers));
        double dropout = c.Adapter.Double("EncoderDropout");
        if (!(dropout >= 0 && dropout < 1)) c.Report(PeftDiagnosticIds.DropoutOutOfRange, "EncoderDropout", Name, ValidationContext.Format(dropout));
        if (c.Adapter.Int("EncoderType") != Lstm)
        {
            if (layers > 0 && layers != 2) c.Report(MlpIgnoresId, "EncoderNumLayers", Name, c.Member.Name, "EncoderNumLayers", ValidationContext.Format(layers));
            if (dropout > 0 && dropout < 1) c.Report(MlpIgnoresId, "EncoderDropout", Name, c.Member.Name, "EncoderDropout", ValidationContext.Format(dropout));
        }
    }

    public override bool IsCountable(AdapterModel adapter)
        => adapter.Int("virtualTokens") > 0 && adapter.Int("encoderHiddenSize") >= 0 && adapter.Int("EncoderNumLayers") > 0;

    /// <summary>V·d + the head: MLP d·h + h + h·h + h + h·d + d; LSTM Σ_l 2·(4h·in_l + 4h·h + 8h) with in_0 = d, in_l = 2h, then
    /// 2h·2h + 2h + 2h·d + d.</summary>
    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
    {
        long d = outFeatures;
        long h = adapter.Int("encoderHiddenSize") > 0 ? adapter.Int("encoderHiddenSize") : d;
        long total = Mul(adapter.Int("virtualTokens"), d);
        if (adapter.Int("EncoderType") == Lstm)
        {
            for (int l = 0; l < adapter.Int("EncoderNumLayers"); l++)
            {
                long input = l == 0 ? d : 2 * h;
                long direction = Add(Add(Mul(4 * h, input), Mul(4 * h, h)), 8 * h);
                total = Add(total, Mul(2, direction));
            }

            return Add(total, Add(Add(Mul(2 * h, 2 * h), 2 * h), Add(Mul(2 * h, d), d)));
        }

        return Add(total, Add(Add(Add(Mul(d, h), h), Add(Mul(h, h), h)), Add(Mul(h, d), d)));
    }

    private static long Mul(long a, long b) => global::Peft.Generators.Rules.SaturatingMath.Multiply(a, b);

    private static long Add(long a, long b) => global::Peft.Generators.Rules.SaturatingMath.Add(a, b);
}
