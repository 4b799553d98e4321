using Microsoft.CodeAnalysis;
using Peft.Generators.Parsing;

namespace Peft.Analyzers.Diagnostics;

/// <summary>
/// The descriptors of the sibling projection rules (issue 10): projections of one module that take the same input in
/// <c>forward</c> and can run as one product (<c>model.FuseSiblingProjections()</c>). <see cref="PeftModelValidator"/> finds
/// them; <see cref="PeftAttributeAnalyzer"/> reports them; listed with the others in <see cref="DiagnosticDescriptors.All"/>.
/// </summary>
internal static class SiblingProjectionDescriptors
{
    /// <summary>PEFT0051 (Info): adapted linear members that forward calls with one parameter or local form a sibling group.</summary>
    public static readonly DiagnosticDescriptor SiblingProjections = new(
        PeftDiagnosticIds.SiblingProjections,
        "Sibling projections can run as one product",
        "Members {0} of '{1}' take the same input '{2}' in forward; model.FuseSiblingProjections() runs them as one product",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Info,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);

    /// <summary>PEFT0052 (Warning): a [FuseProjections] group that cannot apply (the group is left out of ISiblingProjections).</summary>
    public static readonly DiagnosticDescriptor SiblingGroupCannotApply = new(
        PeftDiagnosticIds.SiblingGroupCannotApply,
        "Declared sibling projection group cannot apply",
        "[FuseProjections(\"{0}\")] on '{1}' cannot apply: {2}",
        DiagnosticDescriptors.Category,
        DiagnosticSeverity.Warning,
        isEnabledByDefault: true,
        description: DiagnosticDescriptors.DescriptionWithoutPath);
}
