using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

/// <summary>
/// The diagnostic IDs of every problem <see cref="PeftModelValidator"/> and the analyzers report. One place,
/// so the validator, the descriptors and the docs pages (docs/diagnostics/PEFTnnnn.md) cannot drift apart.
/// </summary>
internal static class PeftDiagnosticIds
{
    public const string RankNotPositive = "PEFT0001";
    public const string AlphaNotPositive = "PEFT0002";
    public const string DropoutOutOfRange = "PEFT0003";
    public const string RankExceedsLayer = "PEFT0004";
    public const string FactorDoesNotDivide = "PEFT0005";
    public const string WrongMemberType = "PEFT0006";
    public const string NotPartial = "PEFT0007";
    public const string AdapterOnFrozen = "PEFT0008";
    public const string DuplicateAdapterName = "PEFT0009";
    public const string OverBudget = "PEFT0010";
    public const string InvalidMSBuildProperty = "PEFT0011";
    public const string ReadOnlyMember = "PEFT0012";
    public const string MissingInitializeCall = "PEFT0013";
    public const string VirtualTokensNotPositive = "PEFT0014";
    public const string NotAModule = "PEFT0015";
    public const string AdapterNameMethodConflict = "PEFT0016";
    public const string UntargetableMember = "PEFT0017";
    public const string UnknownTargetName = "PEFT0018";
    public const string LoFiTValueOutOfRange = "PEFT0033";
    public const string LoFiTHeadCountOutOfRange = "PEFT0034";
    public const string BottleneckArgumentOutOfRange = "PEFT0035";
    public const string BottleneckUnknownName = "PEFT0036";
    public const string BottleneckArgumentsConflict = "PEFT0037";
    public const string MeftVariantUnsupported = "PEFT0040";
    public const string MeftFactorZero = "PEFT0041";
    public const string MeftValueOutOfRange = "PEFT0042";
    public const string PromptConfigOutOfRange = "PEFT0049";
    public const string SiblingProjections = "PEFT0051";
    public const string SiblingGroupCannotApply = "PEFT0052";
}

/// <summary>Where in source a <see cref="PeftProblem"/> belongs; the analyzer maps it to a real location.</summary>
internal enum PeftProblemTarget
{
    /// <summary>The identifier of the annotated class.</summary>
    Class = 0,

    /// <summary>The identifier of the member named <see cref="PeftProblem.MemberName"/>.</summary>
    Member = 1,

    /// <summary>The declared type of the member named <see cref="PeftProblem.MemberName"/>.</summary>
    MemberType = 2,

    /// <summary>The adapter attribute number <see cref="PeftProblem.AdapterIndex"/> on the member.</summary>
    Attribute = 3,

    /// <summary>
    /// The argument <see cref="PeftProblem.ArgumentName"/> (a constructor parameter or a named property) of the adapter
    /// attribute number <see cref="PeftProblem.AdapterIndex"/>; the whole attribute when the argument is not written.
    /// </summary>
    AttributeArgument = 4,

    /// <summary>The <c>[FuseProjections]</c> attribute on the member named <see cref="PeftProblem.MemberName"/>.</summary>
    FuseAttribute = 5,

    /// <summary>
    /// The call number <see cref="PeftProblem.AdapterIndex"/> of <see cref="PeftClassModel.ForwardCalls"/> in <c>forward</c>
    /// (a call of the member named <see cref="PeftProblem.MemberName"/>).
    /// </summary>
    ForwardCall = 6,
}

/// <summary>
/// One problem in a <see cref="PeftClassModel"/>: an ID from <see cref="PeftDiagnosticIds"/>, where it belongs, and the
/// message arguments (already formatted with the invariant culture). Holds no symbol or location, so it is equatable.
/// </summary>
/// <param name="Id">The diagnostic ID.</param>
/// <param name="Target">What the problem is about.</param>
/// <param name="MemberName">The member, for member, type, attribute and argument targets; null for the class.</param>
/// <param name="AdapterIndex">Index into the member's <see cref="MemberModel.Adapters"/> (source order), the call number for
/// <see cref="PeftProblemTarget.ForwardCall"/>, or -1.</param>
/// <param name="ArgumentName">The attribute argument (<c>rank</c>, <c>alpha</c>, <c>dropout</c>, <c>virtualTokens</c>, <c>Factor</c>, <c>Name</c>), or null.</param>
/// <param name="MessageArgs">The arguments of the diagnostic's message format.</param>
internal sealed record PeftProblem(
    string Id,
    PeftProblemTarget Target,
    string? MemberName,
    int AdapterIndex,
    string? ArgumentName,
    EquatableArray<string> MessageArgs);
