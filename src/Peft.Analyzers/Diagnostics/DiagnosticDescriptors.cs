using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using System.Linq;
using Peft.Generators.Methods;
using Peft.Generators.Parsing;

namespace Peft.Analyzers.Diagnostics;

/// <summary>
/// Every diagnostic the Peft analyzers report. IDs come from <see cref="PeftDiagnosticIds"/>; each has a docs page
/// <c>docs/diagnostics/PEFTnnnn.md</c> linked from <see cref="DiagnosticDescriptor.HelpLinkUri"/>. Message formats take
/// the arguments <see cref="PeftModelValidator"/> puts in <see cref="PeftProblem.MessageArgs"/>, in that order.
/// </summary>
internal static class DiagnosticDescriptors
{
    /// <summary>The category of every Peft diagnostic.</summary>
    public const string Category = "Peft";

    /// <summary>Where the docs pages live; a help link is this plus the ID plus ".md".</summary>
    public const string HelpLinkBase = "https://github.com/peft-for-dotnet/peft/blob/main/docs/diagnostics/";

    /// <summary>PEFT0001: LoRA / Kronecker rank is not positive.</summary>
    public static readonly DiagnosticDescriptor RankNotPositive = new(
        PeftDiagnosticIds.RankNotPositive,
        "Adapter rank must be positive",
        "[{0}] rank must be positive, but is {1}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.RankNotPositive));

    /// <summary>PEFT0002: alpha is zero, negative, NaN or infinite.</summary>
    public static readonly DiagnosticDescriptor AlphaNotPositive = new(
        PeftDiagnosticIds.AlphaNotPositive,
        "Adapter alpha must be positive and finite",
        "[{0}] alpha must be a positive finite number, but is {1}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.AlphaNotPositive));

    /// <summary>PEFT0003: a LoRA-style method's dropout outside [0, 1).</summary>
    public static readonly DiagnosticDescriptor DropoutOutOfRange = new(
        PeftDiagnosticIds.DropoutOutOfRange,
        "Adapter dropout must be in [0, 1)",
        "[{0}] dropout must be in [0, 1), but is {1}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.DropoutOutOfRange));

    /// <summary>PEFT0004: a low-rank method's rank larger than min(in, out) of a layer with constant sizes.</summary>
    public static readonly DiagnosticDescriptor RankExceedsLayer = new(
        PeftDiagnosticIds.RankExceedsLayer,
        "Adapter rank is larger than the layer's sizes",
        "[{0}] rank {1} is larger than min(in, out) of '{2}', a Linear({3}, {4}); use a rank of at most min(in, out)",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.RankExceedsLayer));

    /// <summary>PEFT0005: Kronecker Factor does not divide both layer sizes.</summary>
    public static readonly DiagnosticDescriptor FactorDoesNotDivide = new(
        PeftDiagnosticIds.FactorDoesNotDivide,
        "Kronecker Factor must divide both layer sizes",
        "Kronecker Factor {0} does not divide both sizes of '{1}' (in {2}, out {3}); use a common divisor of both, or -1 for automatic factorization",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.FactorDoesNotDivide));

    /// <summary>PEFT0006: adapter on a member of the wrong layer kind or declared type.</summary>
    public static readonly DiagnosticDescriptor WrongMemberType = new(
        PeftDiagnosticIds.WrongMemberType,
        "Adapter attribute on a member of the wrong type",
        "[{0}] on '{1}' needs {2}, but {3}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.WrongMemberType));

    /// <summary>PEFT0007: the annotated class or a containing type is not partial.</summary>
    public static readonly DiagnosticDescriptor NotPartial = new(
        PeftDiagnosticIds.NotPartial,
        "Class with PEFT attributes must be partial",
        "'{0}' has PEFT attributes, so it and every type that contains it must be declared partial for the generated InitializePeft()",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.NotPartial));

    /// <summary>PEFT0008: adapter on a [Freeze] member or inside a [Freeze] class.</summary>
    public static readonly DiagnosticDescriptor AdapterOnFrozen = new(
        PeftDiagnosticIds.AdapterOnFrozen,
        "Adapter on a frozen member",
        "[{0}] on '{1}' can never be trained: {2}; remove the adapter or the [Freeze]",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.AdapterOnFrozen));

    /// <summary>PEFT0009: two adapters with one name on one member.</summary>
    public static readonly DiagnosticDescriptor DuplicateAdapterName = new(
        PeftDiagnosticIds.DuplicateAdapterName,
        "Duplicate adapter name on one member",
        "'{0}' already has an adapter named '{1}'; give each adapter on a member its own Name",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.DuplicateAdapterName));

    /// <summary>PEFT0010: the countable trainable parameters exceed PeftMaxTrainableParameters.</summary>
    public static readonly DiagnosticDescriptor OverBudget = new(
        PeftDiagnosticIds.OverBudget,
        "Trainable parameters over the PeftMaxTrainableParameters budget",
        "'{0}' has {1} trainable parameters (adapters and [Trainable] layers), over the PeftMaxTrainableParameters budget of {2}; members whose sizes are unknown at compile time are not counted ({3} here)",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.OverBudget));

    /// <summary>PEFT0011: an MSBuild property the analyzers read cannot be parsed (reported once, at compilation end).</summary>
    public static readonly DiagnosticDescriptor InvalidMSBuildProperty = new(
        PeftDiagnosticIds.InvalidMSBuildProperty,
        "Invalid Peft MSBuild property value",
        "MSBuild property {0} has the value '{1}', which is not {2}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.InvalidMSBuildProperty),
        customTags: WellKnownDiagnosticTags.CompilationEnd);

    /// <summary>PEFT0012: adapted member is readonly or a property without a setter.</summary>
    public static readonly DiagnosticDescriptor ReadOnlyMember = new(
        PeftDiagnosticIds.ReadOnlyMember,
        "Adapted member must be writable",
        "'{0}' has an adapter but is {1}; the generated InitializePeft() must replace it with the adapter wrapper",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.ReadOnlyMember));

    /// <summary>PEFT0013: constructors of a class with adapters do not call InitializePeft().</summary>
    public static readonly DiagnosticDescriptor MissingInitializeCall = new(
        PeftDiagnosticIds.MissingInitializeCall,
        "Constructor does not call InitializePeft()",
        "'{0}' declares adapters, but these constructors never call InitializePeft(), so the instances they build have no adapters: {1}",
        Category,
        DiagnosticSeverity.Warning,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.MissingInitializeCall));

    /// <summary>PEFT0014: PromptTune virtualTokens is not positive.</summary>
    public static readonly DiagnosticDescriptor VirtualTokensNotPositive = new(
        PeftDiagnosticIds.VirtualTokensNotPositive,
        "Prompt tuning virtual tokens must be positive",
        "[PromptTune] virtualTokens must be positive, but is {0}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.VirtualTokensNotPositive));

    /// <summary>PEFT0015: the annotated class does not derive from torch.nn.Module.</summary>
    public static readonly DiagnosticDescriptor NotAModule = new(
        PeftDiagnosticIds.NotAModule,
        "Class with PEFT attributes must derive from torch.nn.Module",
        "'{0}' has PEFT attributes but does not derive from TorchSharp.torch.nn.Module",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.NotAModule));

    /// <summary>PEFT0016: one adapter name used with different methods in one class.</summary>
    public static readonly DiagnosticDescriptor AdapterNameMethodConflict = new(
        PeftDiagnosticIds.AdapterNameMethodConflict,
        "One adapter name used with different methods",
        "Adapter '{0}' is declared as [{1}] here but as [{2}] on '{3}'; a PEFT adapter has one peft_type, so give them different Name values",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.AdapterNameMethodConflict));

    /// <summary>PEFT0017: a linear member of an [Adaptable] class that configuration targeting cannot adapt.</summary>
    public static readonly DiagnosticDescriptor UntargetableMember = new(
        PeftDiagnosticIds.UntargetableMember,
        "Linear member of an [Adaptable] class cannot be targeted",
        "Member '{0}' of [Adaptable] class '{1}' holds a linear layer that configuration targeting cannot adapt: {2}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.UntargetableMember));

    /// <summary>PEFT0018: a constant target_modules / exclude_modules entry that names no module of the model (TargetNamesAnalyzer).</summary>
    public static readonly DiagnosticDescriptor UnknownTargetName = new(
        PeftDiagnosticIds.UnknownTargetName,
        "Target module name matches no module of the model",
        "{0} entry '{1}' matches no module of '{2}'.{3}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: HelpLink(PeftDiagnosticIds.UnknownTargetName));

    /// <summary>Every descriptor: the shared ones in ID order, then each method's own (<see cref="MethodSpec.Diagnostics"/>).</summary>
    public static readonly ImmutableArray<DiagnosticDescriptor> All = Shared().AddRange(MethodCatalogue.All.SelectMany(m => m.Diagnostics));

    private static ImmutableArray<DiagnosticDescriptor> Shared() => ImmutableArray.Create(
        RankNotPositive,
        AlphaNotPositive,
        DropoutOutOfRange,
        RankExceedsLayer,
        FactorDoesNotDivide,
        WrongMemberType,
        NotPartial,
        AdapterOnFrozen,
        DuplicateAdapterName,
        OverBudget,
        InvalidMSBuildProperty,
        ReadOnlyMember,
        MissingInitializeCall,
        VirtualTokensNotPositive,
        NotAModule,
        AdapterNameMethodConflict,
        UntargetableMember,
        UnknownTargetName);

    /// <summary>The docs page of a diagnostic ID.</summary>
    public static string HelpLink(string id) => HelpLinkBase + id + ".md";

    /// <summary>The descriptor with the given ID, or null.</summary>
    public static DiagnosticDescriptor? ById(string id)
    {
        foreach (var descriptor in All)
        {
            if (descriptor.Id == id) return descriptor;
        }
        return null;
    }
}
