using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Generators.Methods;
using Peft.Generators.Parsing;

namespace Peft.Analyzers.Diagnostics;

/// <summary>
/// Every diagnostic the Peft analyzers report. IDs come from <see cref="PeftDiagnosticIds"/>; each has a docs page
/// <c>docs/diagnostics/PEFTnnnn.md</c>, shipped inside the Peft.Runtime package under <c>docs/diagnostics/</c>. Message
/// formats take the arguments <see cref="PeftModelValidator"/> puts in <see cref="PeftProblem.MessageArgs"/>, in that order.
/// </summary>
/// <remarks>
/// There is no web site with these pages, so the descriptors below carry no help link. The analyzers report through
/// <see cref="WithDocs(AnalyzerOptions)"/> instead: the package's <c>buildTransitive</c> props give the compilation the full path of the
/// pages in the package folder (MSBuild property <c>PeftDiagnosticsDocs</c>), and each reported diagnostic's help link is
/// the <c>file://</c> URI of its page there, its description the page's path (docs/diagnostics/README.md, "Help links").
/// </remarks>
internal static class DiagnosticDescriptors
{
    /// <summary>The category of every Peft diagnostic.</summary>
    public const string Category = "Peft";

    /// <summary>The MSBuild property with the full path of the folder holding the docs pages (set by Peft.Runtime.props).</summary>
    public const string DocsProperty = "PeftDiagnosticsDocs";

    /// <summary>The analyzer config key of <see cref="DocsProperty"/>.</summary>
    public const string DocsPropertyKey = "build_property." + DocsProperty;

    private static readonly ConcurrentDictionary<string, DescriptorSet> s_byDocs = new(StringComparer.Ordinal);

    /// <summary>PEFT0001: LoRA / Kronecker rank is not positive.</summary>
    public static readonly DiagnosticDescriptor RankNotPositive = new(
        PeftDiagnosticIds.RankNotPositive,
        "Adapter rank must be positive",
        "[{0}] rank must be positive, but is {1}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0002: alpha is zero, negative, NaN or infinite.</summary>
    public static readonly DiagnosticDescriptor AlphaNotPositive = new(
        PeftDiagnosticIds.AlphaNotPositive,
        "Adapter alpha must be positive and finite",
        "[{0}] alpha must be a positive finite number, but is {1}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0003: a LoRA-style method's dropout outside [0, 1).</summary>
    public static readonly DiagnosticDescriptor DropoutOutOfRange = new(
        PeftDiagnosticIds.DropoutOutOfRange,
        "Adapter dropout must be in [0, 1)",
        "[{0}] dropout must be in [0, 1), but is {1}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0004: a low-rank method's rank larger than min(in, out) of a layer with constant sizes.</summary>
    public static readonly DiagnosticDescriptor RankExceedsLayer = new(
        PeftDiagnosticIds.RankExceedsLayer,
        "Adapter rank is larger than the layer's sizes",
        "[{0}] rank {1} is larger than min(in, out) of '{2}', a Linear({3}, {4}); use a rank of at most min(in, out)",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0005: Kronecker Factor does not divide both layer sizes.</summary>
    public static readonly DiagnosticDescriptor FactorDoesNotDivide = new(
        PeftDiagnosticIds.FactorDoesNotDivide,
        "Kronecker Factor must divide both layer sizes",
        "Kronecker Factor {0} does not divide both sizes of '{1}' (in {2}, out {3}); use a common divisor of both, or -1 for automatic factorization",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0006: adapter on a member of the wrong layer kind or declared type.</summary>
    public static readonly DiagnosticDescriptor WrongMemberType = new(
        PeftDiagnosticIds.WrongMemberType,
        "Adapter attribute on a member of the wrong type",
        "[{0}] on '{1}' needs {2}, but {3}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0007: the annotated class or a containing type is not partial.</summary>
    public static readonly DiagnosticDescriptor NotPartial = new(
        PeftDiagnosticIds.NotPartial,
        "Class with PEFT attributes must be partial",
        "'{0}' has PEFT attributes, so it and every type that contains it must be declared partial for the generated InitializePeft()",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0008: adapter on a [Freeze] member or inside a [Freeze] class.</summary>
    public static readonly DiagnosticDescriptor AdapterOnFrozen = new(
        PeftDiagnosticIds.AdapterOnFrozen,
        "Adapter on a frozen member",
        "[{0}] on '{1}' can never be trained: {2}; remove the adapter or the [Freeze]",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0009: two adapters with one name on one member.</summary>
    public static readonly DiagnosticDescriptor DuplicateAdapterName = new(
        PeftDiagnosticIds.DuplicateAdapterName,
        "Duplicate adapter name on one member",
        "'{0}' already has an adapter named '{1}'; give each adapter on a member its own Name",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0010: the countable trainable parameters exceed PeftMaxTrainableParameters.</summary>
    public static readonly DiagnosticDescriptor OverBudget = new(
        PeftDiagnosticIds.OverBudget,
        "Trainable parameters over the PeftMaxTrainableParameters budget",
        "'{0}' has {1} trainable parameters (adapters and [Trainable] layers), over the PeftMaxTrainableParameters budget of {2}; members whose sizes are unknown at compile time are not counted ({3} here)",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0011: an MSBuild property the analyzers read cannot be parsed (reported once, at compilation end).</summary>
    public static readonly DiagnosticDescriptor InvalidMSBuildProperty = new(
        PeftDiagnosticIds.InvalidMSBuildProperty,
        "Invalid Peft MSBuild property value",
        "MSBuild property {0} has the value '{1}', which is not {2}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath,
        customTags: WellKnownDiagnosticTags.CompilationEnd);

    /// <summary>PEFT0012: adapted member is readonly or a property without a setter.</summary>
    public static readonly DiagnosticDescriptor ReadOnlyMember = new(
        PeftDiagnosticIds.ReadOnlyMember,
        "Adapted member must be writable",
        "'{0}' has an adapter but is {1}; the generated InitializePeft() must replace it with the adapter wrapper",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>
    /// PEFT0013: constructors of a class with adapters do not call InitializePeft(). An error by default: an instance built
    /// without the call has no adapters and nothing frozen, so a plain <c>parameters()</c> optimizer silently fine-tunes
    /// the whole model. A class that calls it through a helper suppresses the diagnostic (docs/diagnostics/PEFT0013.md).
    /// </summary>
    public static readonly DiagnosticDescriptor MissingInitializeCall = new(
        PeftDiagnosticIds.MissingInitializeCall,
        "Constructor does not call InitializePeft()",
        "'{0}' declares adapters, but these constructors never call InitializePeft(), so the instances they build have no adapters: {1}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0014: a prompt method's (PromptTune, PTuning) virtualTokens is not positive.</summary>
    public static readonly DiagnosticDescriptor VirtualTokensNotPositive = new(
        PeftDiagnosticIds.VirtualTokensNotPositive,
        "Prompt tuning virtual tokens must be positive",
        "[{0}] virtualTokens must be positive, but is {1}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0015: the annotated class does not derive from torch.nn.Module.</summary>
    public static readonly DiagnosticDescriptor NotAModule = new(
        PeftDiagnosticIds.NotAModule,
        "Class with PEFT attributes must derive from torch.nn.Module",
        "'{0}' has PEFT attributes but does not derive from TorchSharp.torch.nn.Module",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0016: one adapter name used with different methods in one class.</summary>
    public static readonly DiagnosticDescriptor AdapterNameMethodConflict = new(
        PeftDiagnosticIds.AdapterNameMethodConflict,
        "One adapter name used with different methods",
        "Adapter '{0}' is declared as [{1}] here but as [{2}] on '{3}'; a PEFT adapter has one peft_type, so give them different Name values",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0017: a linear member of an [Adaptable] class that configuration targeting cannot adapt.</summary>
    public static readonly DiagnosticDescriptor UntargetableMember = new(
        PeftDiagnosticIds.UntargetableMember,
        "Linear member of an [Adaptable] class cannot be targeted",
        "Member '{0}' of [Adaptable] class '{1}' holds a linear layer that configuration targeting cannot adapt: {2}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>PEFT0018: a constant target_modules / exclude_modules entry that names no module of the model (TargetNamesAnalyzer).</summary>
    public static readonly DiagnosticDescriptor UnknownTargetName = new(
        PeftDiagnosticIds.UnknownTargetName,
        "Target module name matches no module of the model",
        "{0} entry '{1}' matches no module of '{2}'.{3}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: DescriptionWithoutPath);

    /// <summary>Every descriptor, the shared ones and the methods' own (<see cref="MethodSpec.Diagnostics"/>), in ID order (a
    /// method's new ID need not follow the catalogue's order, and shared IDs are taken in ranges).</summary>
    public static readonly ImmutableArray<DiagnosticDescriptor> All = Shared().AddRange(
        MethodCatalogue.All.SelectMany(m => m.Diagnostics).Select(WithPackageDescription)).Sort((a, b) => string.CompareOrdinal(a.Id, b.Id));

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
        UnknownTargetName,
        InsertedMethodDescriptors.LoFiTValueOutOfRange,
        InsertedMethodDescriptors.LoFiTHeadCountOutOfRange,
        InsertedMethodDescriptors.BottleneckArgumentOutOfRange,
        InsertedMethodDescriptors.BottleneckUnknownName,
        InsertedMethodDescriptors.BottleneckArgumentsConflict,
        InsertedMethodDescriptors.MeftVariantUnsupported,
        InsertedMethodDescriptors.MeftFactorZero,
        InsertedMethodDescriptors.MeftValueOutOfRange,
        InsertedMethodDescriptors.PromptConfigOutOfRange,
        SiblingProjectionDescriptors.SiblingProjections,
        SiblingProjectionDescriptors.SiblingGroupCannotApply);

    /// <summary>The description of a descriptor when the pages' folder is not known (no <see cref="DocsProperty"/>).</summary>
    public const string DescriptionWithoutPath =
        "The docs page of each Peft diagnostic is docs/diagnostics/<ID>.md inside the Peft.Runtime NuGet package (its folder in the NuGet packages folder, e.g. ~/.nuget/packages/peft.runtime/<version>/docs/diagnostics/).";

    /// <summary>
    /// The help link of a descriptor declared in code: none, since no web site hosts the pages (a link would be dead). The
    /// analyzers report with <see cref="WithDocs(AnalyzerOptions)"/>, whose descriptors link to the page inside the package
    /// folder. Method folders pass this for their own descriptors, so they follow the same rule.
    /// </summary>
    /// <param name="id">The diagnostic ID (kept so a method's descriptor names its page where it is declared).</param>
    /// <returns><see langword="null"/>.</returns>
    public static string? HelpLink(string id) => null;

    /// <summary>A method's own descriptor with <see cref="DescriptionWithoutPath"/> when it has no description.</summary>
    private static DiagnosticDescriptor WithPackageDescription(DiagnosticDescriptor descriptor)
        => descriptor.Description.ToString(CultureInfo.InvariantCulture).Length > 0
            ? descriptor
            : new DiagnosticDescriptor(descriptor.Id, descriptor.Title, descriptor.MessageFormat, descriptor.Category, descriptor.DefaultSeverity,
                descriptor.IsEnabledByDefault, DescriptionWithoutPath, descriptor.HelpLinkUri, descriptor.CustomTags.ToArray());

    /// <summary>The descriptor with the given ID, or null (no help link; see <see cref="WithDocs(AnalyzerOptions)"/>).</summary>
    public static DiagnosticDescriptor? ById(string id)
    {
        foreach (var descriptor in All)
        {
            if (descriptor.Id == id) return descriptor;
        }
        return null;
    }

    /// <summary>
    /// The descriptors to report with in a compilation whose analyzer options give <see cref="DocsPropertyKey"/>: each with
    /// its page's <c>file://</c> URI as help link and the page's path in its description. Without the property, or with a
    /// value that is not an absolute path, the descriptors of <see cref="All"/> (no help link).
    /// </summary>
    /// <param name="options">The compilation's analyzer options.</param>
    /// <returns>The set; cached per folder.</returns>
    public static DescriptorSet WithDocs(AnalyzerOptions options)
    {
        options.AnalyzerConfigOptionsProvider.GlobalOptions.TryGetValue(DocsPropertyKey, out string? folder);
        return WithDocs(folder);
    }

    /// <summary><see cref="WithDocs(AnalyzerOptions)"/> for a folder path (null or empty: no help links).</summary>
    /// <param name="folder">The full path of the folder holding <c>PEFTnnnn.md</c>.</param>
    /// <returns>The set; cached per folder.</returns>
    public static DescriptorSet WithDocs(string? folder)
    {
        folder = folder?.Trim();
        if (string.IsNullOrEmpty(folder)) return DescriptorSet.WithoutDocs;
        return s_byDocs.GetOrAdd(folder!, f => DescriptorSet.Create(f));
    }

    /// <summary>The <c>file://</c> URI of the page of <paramref name="id"/> in <paramref name="folder"/>, or null when the folder is not an absolute path.</summary>
    /// <param name="folder">The pages' folder.</param>
    /// <param name="id">A diagnostic ID.</param>
    /// <returns>The URI text, or null.</returns>
    public static string? PageUri(string folder, string id)
    {
        try
        {
            string path = PagePath(folder, id);
            return Uri.TryCreate(path, UriKind.Absolute, out var uri) && uri.IsFile ? uri.AbsoluteUri : null;
        }
        catch (ArgumentException)
        {
            return null; // characters a path cannot hold (older frameworks check)
        }
    }

    /// <summary>The path of the page of <paramref name="id"/> in <paramref name="folder"/>.</summary>
    /// <param name="folder">The pages' folder.</param>
    /// <param name="id">A diagnostic ID.</param>
    /// <returns>The path.</returns>
    public static string PagePath(string folder, string id) => System.IO.Path.Combine(folder, id + ".md");
}

/// <summary>Every descriptor with the help links of one docs folder (<see cref="DiagnosticDescriptors.WithDocs(string?)"/>).</summary>
internal sealed class DescriptorSet
{
    private readonly Dictionary<string, DiagnosticDescriptor> _byId;

    private DescriptorSet(IEnumerable<DiagnosticDescriptor> descriptors)
    {
        All = descriptors.ToImmutableArray();
        _byId = new Dictionary<string, DiagnosticDescriptor>(StringComparer.Ordinal);
        foreach (var descriptor in All) _byId[descriptor.Id] = descriptor;
    }

    /// <summary>The descriptors of <see cref="DiagnosticDescriptors.All"/>, without help links.</summary>
    public static DescriptorSet WithoutDocs { get; } = new(DiagnosticDescriptors.All);

    /// <summary>The descriptors with links into <paramref name="folder"/>; without links when it is not an absolute path.</summary>
    public static DescriptorSet Create(string folder)
    {
        var list = new List<DiagnosticDescriptor>();
        foreach (var template in DiagnosticDescriptors.All)
        {
            string? uri = DiagnosticDescriptors.PageUri(folder, template.Id);
            if (uri is null) return WithoutDocs;
            string path = DiagnosticDescriptors.PagePath(folder, template.Id);
            list.Add(new DiagnosticDescriptor(
                template.Id,
                template.Title,
                template.MessageFormat,
                template.Category,
                template.DefaultSeverity,
                template.IsEnabledByDefault,
                description: "Docs page: " + path + " (shipped in the Peft.Runtime package).",
                helpLinkUri: uri,
                customTags: template.CustomTags.ToArray()));
        }
        return new DescriptorSet(list);
    }

    /// <summary>All descriptors, in <see cref="DiagnosticDescriptors.All"/> order.</summary>
    public ImmutableArray<DiagnosticDescriptor> All { get; }

    /// <summary>The descriptor of <paramref name="id"/>, or null.</summary>
    public DiagnosticDescriptor? ById(string id) => _byId.TryGetValue(id, out var descriptor) ? descriptor : null;

    /// <summary>The descriptor of <paramref name="id"/>; throws for an unknown ID.</summary>
    public DiagnosticDescriptor this[string id] => _byId[id];
}
