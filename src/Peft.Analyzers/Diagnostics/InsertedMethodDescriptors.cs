using Microsoft.CodeAnalysis;
using Peft.Generators.Parsing;

namespace Peft.Analyzers.Diagnostics;

/// <summary>
/// The descriptors of the rules on configurations of the methods inserted around layers rather than declared on them
/// (bottleneck adapters and Compacter, LoFiT, prefix tuning and the adaption prompt, MEFT), reported by their configuration
/// analyzers on constant arguments; listed with the others in <see cref="DiagnosticDescriptors.All"/>.
/// </summary>
internal static class InsertedMethodDescriptors
{
    /// <summary>PEFT0035: a constant BottleneckConfig argument out of its range (BottleneckConfigAnalyzer).</summary>
    public static readonly DiagnosticDescriptor BottleneckArgumentOutOfRange = new(
        PeftDiagnosticIds.BottleneckArgumentOutOfRange,
        "Bottleneck adapter argument out of range",
        "BottleneckConfig {0} = {1}: {2}",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0033: a constant LoFiT L1 weight or initialisation scale that is negative or not finite (LoFiTAnalyzer).</summary>
    public static readonly DiagnosticDescriptor LoFiTValueOutOfRange = new(
        PeftDiagnosticIds.LoFiTValueOutOfRange,
        "LoFiT configuration value out of range",
        "LoFiTConfig {0} = {1}: {2}",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0034: a constant LoFiT head fraction outside (0, 1] or head count below 1 (LoFiTAnalyzer).</summary>
    public static readonly DiagnosticDescriptor LoFiTHeadCountOutOfRange = new(
        PeftDiagnosticIds.LoFiTHeadCountOutOfRange,
        "LoFiT head selection size out of range",
        "SelectHeads {0} = {1}: {2}",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0049: a constant prefix-tuning or adaption-prompt field out of range (PromptConfigAnalyzer).</summary>
    public static readonly DiagnosticDescriptor PromptConfigOutOfRange = new(
        PeftDiagnosticIds.PromptConfigOutOfRange,
        "Prefix or adaption-prompt configuration value out of range",
        "{0} {1} = {2}: {3}",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0040: a constant <c>new MeftConfig(MeftVariant.Meft3, ...)</c> (MeftConfigAnalyzer).</summary>
    public static readonly DiagnosticDescriptor MeftVariantUnsupported = new(
        PeftDiagnosticIds.MeftVariantUnsupported,
        "MEFT3 is not supported",
        "MeftConfig Variant = Meft3 (f_arch attn) needs each block split into its attention and feed-forward halves, which the transformer-stack contract does not offer; use MeftVariant.Meft1 or MeftVariant.Meft2",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0036: a constant BottleneckConfig non_linearity or init_weights this library does not know.</summary>
    public static readonly DiagnosticDescriptor BottleneckUnknownName = new(
        PeftDiagnosticIds.BottleneckUnknownName,
        "Unknown bottleneck adapter activation or initialisation",
        "BottleneckConfig {0} = \"{1}\" is not one of {2}",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0041: a constant MEFT factor (x1_factor, x2_factor) that is zero or not finite (MeftConfigAnalyzer).</summary>
    public static readonly DiagnosticDescriptor MeftFactorZero = new(
        PeftDiagnosticIds.MeftFactorZero,
        "MEFT factor must be finite and nonzero",
        "MeftConfig {0} = {1}: the reversible backward divides by it; use a finite nonzero factor (the paper uses 0.1)",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0037: constant BottleneckConfig arguments that do not go together.</summary>
    public static readonly DiagnosticDescriptor BottleneckArgumentsConflict = new(
        PeftDiagnosticIds.BottleneckArgumentsConflict,
        "Bottleneck adapter arguments that do not go together",
        "BottleneckConfig: {0}",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0042: a constant MEFT size, count, dropout or activation out of range (MeftConfigAnalyzer).</summary>
    public static readonly DiagnosticDescriptor MeftValueOutOfRange = new(
        PeftDiagnosticIds.MeftValueOutOfRange,
        "MEFT configuration value out of range",
        "MeftConfig {0} = {1}: {2}",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);
}
