using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods;

/// <summary>
/// What the compiler knows about one PEFT method: its attribute, the attribute's arguments (names, kinds, defaults) and
/// the runtime options they become, the layer kinds it adapts, its validation rules with their diagnostic IDs, and the
/// trainable-parameter count it adds to a layer of known size. One subclass per method in <c>Methods/&lt;Name&gt;/</c>,
/// registered by one line in <see cref="MethodCatalogue"/>; the parser, validator and emitter use only this contract.
/// </summary>
internal abstract class MethodSpec
{
    /// <summary>The method's name: the attribute's name without "Attribute" (the runtime's <c>PeftMethod.Name</c>).</summary>
    public abstract string Name { get; }

    /// <summary>The attribute's metadata name, <c>Peft.{Name}Attribute</c>.</summary>
    public string AttributeMetadataName => "Peft." + Name + "Attribute";

    /// <summary>The runtime options record, fully qualified (<c>global::Peft.LoRAOptions</c>).</summary>
    public abstract string OptionsType { get; }

    /// <summary>The layer kinds the method adapts.</summary>
    public abstract LayerKind LayerKinds { get; }

    /// <summary>The attribute's arguments except <c>Name</c> (the adapter name, common to all methods), in the order the
    /// options record's constructor takes them.</summary>
    public abstract ImmutableArray<ArgumentSpec> Arguments { get; }

#if PEFT_ANALYZERS
    /// <summary>Diagnostics of the method's own (beyond the shared ones in <see cref="PeftDiagnosticIds"/>), declared in the
    /// method's folder and compiled into the analyzers only, so a method brings its rules with its folder (release tracking
    /// sees their constant IDs there).</summary>
    public virtual ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics => ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor>.Empty;
#endif

    /// <summary>Reports the problems of one adapter's argument values (the shared structural checks, layer kind, frozen,
    /// names, are done by <see cref="PeftModelValidator"/>).</summary>
    /// <param name="context">The adapter, its member and layer, and where to report.</param>
    public virtual void Validate(ValidationContext context)
    {
    }

    /// <summary>False when the adapter's own values are errors that make a count meaningless (a rank that is not positive):
    /// such an adapter is neither counted nor reported as uncountable.</summary>
    /// <param name="adapter">The adapter.</param>
    /// <returns>True when it can be counted.</returns>
    public virtual bool IsCountable(AdapterModel adapter) => true;

    /// <summary>The trainable parameters the adapter adds to <paramref name="layer"/>, whose kind the method adapts and whose
    /// sizes are known and positive; null when it cannot be known at compile time.</summary>
    /// <param name="adapter">The adapter.</param>
    /// <param name="layer">The layer (kind matched, sizes known).</param>
    /// <param name="inFeatures">The layer's first size.</param>
    /// <param name="outFeatures">The layer's second size.</param>
    /// <returns>The count, or null.</returns>
    public abstract long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures);

    /// <summary>The trainable parameters the adapter's layers share (VB-LoRA's vector bank), counted once per adapter name
    /// and method in a class however many of its members carry the adapter; 0 by default (VeRA's shared projections are
    /// frozen).</summary>
    /// <param name="adapter">One of the adapter's declarations (countable).</param>
    /// <returns>The count.</returns>
    public virtual long CountSharedParameters(AdapterModel adapter) => 0;

    /// <summary>The layer kinds as users read them ("a Linear layer").</summary>
    public string LayerKindText => KindText(LayerKinds);

    internal static string KindText(LayerKind kinds) => kinds switch
    {
        LayerKind.Linear => "a Linear layer",
        LayerKind.Embedding => "an Embedding layer",
        LayerKind.Norm => "a LayerNorm layer (or a norm implementing IAdaptableNorm)",
        LayerKind.Linear | LayerKind.Norm => "a Linear layer or a LayerNorm (or a norm implementing IAdaptableNorm)",
        _ => "a " + kinds.ToString() + " layer",
    };
}

/// <summary>One attribute argument of a method.</summary>
/// <param name="Name">The argument's name in the attribute: a constructor parameter (<c>rank</c>) or a settable property (<c>UseRsLora</c>).</param>
/// <param name="Kind">The value kind.</param>
/// <param name="OptionName">The options record's constructor parameter it becomes (<c>Rank</c>).</param>
/// <param name="DefaultInteger">The default of an Int, Bool (0/1) or Enum argument.</param>
/// <param name="DefaultNumber">The default of a Double argument.</param>
/// <param name="DefaultText">The default of a String argument.</param>
/// <param name="EnumType">For an Enum argument, the enum type fully qualified.</param>
/// <param name="EnumMembers">For an Enum argument, its member names by value (index = value).</param>
internal sealed record ArgumentSpec(
    string Name,
    ArgumentKind Kind,
    string OptionName,
    long DefaultInteger = 0,
    double DefaultNumber = 0,
    string? DefaultText = null,
    string? EnumType = null,
    ImmutableArray<string> EnumMembers = default)
{
    public static ArgumentSpec Int(string name, string option, int defaultValue) => new(name, ArgumentKind.Int, option, DefaultInteger: defaultValue);

    public static ArgumentSpec Double(string name, string option, double defaultValue) => new(name, ArgumentKind.Double, option, DefaultNumber: defaultValue);

    public static ArgumentSpec Bool(string name, string option, bool defaultValue) => new(name, ArgumentKind.Bool, option, DefaultInteger: defaultValue ? 1 : 0);

    public static ArgumentSpec String(string name, string option, string? defaultValue) => new(name, ArgumentKind.String, option, DefaultText: defaultValue);

    public static ArgumentSpec Enum(string name, string option, string enumType, params string[] members)
        => new(name, ArgumentKind.Enum, option, EnumType: enumType, EnumMembers: ImmutableArray.Create(members));

    /// <summary>The argument's default as a value.</summary>
    public ArgumentValue DefaultValue() => new(Name, Kind, DefaultInteger, DefaultNumber, DefaultText, Written: false);
}

/// <summary>What a method's <see cref="MethodSpec.Validate"/> sees, and how it reports.</summary>
internal sealed class ValidationContext
{
    private readonly ImmutableArray<PeftProblem>.Builder _problems;

    internal ValidationContext(ImmutableArray<PeftProblem>.Builder problems, MemberModel member, AdapterModel adapter, int index, MethodSpec spec)
    {
        _problems = problems;
        Member = member;
        Adapter = adapter;
        Index = index;
        Spec = spec;
    }

    /// <summary>The member the attribute is on.</summary>
    public MemberModel Member { get; }

    /// <summary>The adapter.</summary>
    public AdapterModel Adapter { get; }

    /// <summary>The attribute's index among the member's adapter attributes.</summary>
    public int Index { get; }

    /// <summary>The method.</summary>
    public MethodSpec Spec { get; }

    /// <summary>The member's layer when the compiler can see it and it is of a kind the method adapts; null otherwise.</summary>
    public LayerInfo? Layer => Member.Layer is { } layer && (layer.Kind & Spec.LayerKinds) != 0 ? layer : null;

    /// <summary>Reports a problem on the argument <paramref name="argument"/> (on the attribute when it is not written).</summary>
    public void Report(string id, string argument, params string[] args)
        => _problems.Add(new PeftProblem(id, PeftProblemTarget.AttributeArgument, Member.Name, Index, argument, new EquatableArray<string>(args)));

    /// <summary>Formats a number for a message (invariant culture, round-trippable).</summary>
    public static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Formats an integer for a message.</summary>
    public static string Format(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Formats a size that may be unknown ("?").</summary>
    public static string Format(long? value) => value is long v ? Format(v) : "?";
}

/// <summary>
/// The methods the generator and analyzers know: one line per method (and one in the runtime's <c>PeftMethods</c>). The
/// attribute streams of the pipeline and the analyzers' diagnostics come from this list.
/// </summary>
internal static class MethodCatalogue
{
    public static readonly ImmutableArray<MethodSpec> All = ImmutableArray.Create<MethodSpec>(
        new LoRA.LoRASpec(),
        new Kronecker.KroneckerSpec(),
        new PromptTuning.PromptTuneSpec(),
        new DoRA.DoRASpec(),
        new IA3.IA3Spec(),
        new LNTuning.LNTuningSpec(),
        new LoHa.LoHaSpec(),
        new HiRA.HiRASpec(),
        new VeRA.VeRASpec(),
        new BitFit.BitFitSpec(),
        new SSF.SSFSpec(),
        new RandLoRA.RandLoRASpec(),
        new VBLoRA.VBLoRASpec(),
        new SVFit.SVFitSpec(),
        new LoLDU.LoLDUSpec(),
        new DePT.DePTSpec(),
        new PTuning.PTuningSpec(),
        new KaSA.KaSASpec(),
        new SoKA.SoKASpec());

    private static readonly Dictionary<string, MethodSpec> s_byName = Index(s => s.Name);
    private static readonly Dictionary<string, MethodSpec> s_byAttribute = Index(s => s.AttributeMetadataName);

    /// <summary>The spec named <paramref name="name"/>.</summary>
    public static MethodSpec Get(string name) => s_byName[name];

    /// <summary>The spec whose attribute has the metadata name <paramref name="attributeMetadataName"/>, or null.</summary>
    public static MethodSpec? ForAttribute(string? attributeMetadataName)
        => attributeMetadataName is not null && s_byAttribute.TryGetValue(attributeMetadataName, out var spec) ? spec : null;

    private static Dictionary<string, MethodSpec> Index(System.Func<MethodSpec, string> key)
    {
        var map = new Dictionary<string, MethodSpec>(System.StringComparer.Ordinal);
        foreach (var spec in All) map.Add(key(spec), spec);
        return map;
    }
}
