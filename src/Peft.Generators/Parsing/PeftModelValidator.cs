using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using Peft.Generators.Methods;
using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

/// <summary>
/// Checks a parsed <see cref="PeftClassModel"/>. The generator emits code only for models that pass
/// <see cref="CanEmit"/>; the analyzers report every problem with a diagnostic ID (PEFT0001 and up).
/// </summary>
internal static partial class PeftModelValidator
{
    /// <summary>
    /// True when generated code for the model would compile and run: the class is a partial module, and
    /// every adapted member can be replaced by a wrapper layer. Value problems (a bad rank, an over-budget
    /// declaration) are left to the analyzers, which report them as errors in the same build.
    /// </summary>
    public static bool CanEmit(PeftClassModel model)
    {
        if (!model.IsPartial || !model.IsModule) return false;
        foreach (var member in model.Members)
        {
            if (member.Adapters.Count == 0) continue;
            if (member.IsReadOnly || !member.AcceptsWrapper) return false;
            if (CommonLayerKinds(member) == LayerKind.Unknown) return false;
        }
        return true;
    }

    /// <summary>
    /// Every problem in <paramref name="model"/> the compiler can see, in a stable order (class problems, then members in
    /// declaration order). Missing <c>InitializePeft()</c> calls (PEFT0013) need the constructor bodies and are found by
    /// the analyzer; an unparsable MSBuild property (PEFT0011) is a compilation-wide problem.
    /// </summary>
    /// <param name="model">The parsed class.</param>
    /// <param name="maxTrainableParameters">The PeftMaxTrainableParameters budget, or null when none is set.</param>
    public static ImmutableArray<PeftProblem> Validate(PeftClassModel model, long? maxTrainableParameters)
    {
        var problems = ImmutableArray.CreateBuilder<PeftProblem>();
        string className = ClassDisplayName(model);

        if (!model.IsModule)
        {
            problems.Add(ClassProblem(PeftDiagnosticIds.NotAModule, className));
        }
        if (!model.IsPartial)
        {
            problems.Add(ClassProblem(PeftDiagnosticIds.NotPartial, className));
        }

        // First use of each adapter name in the class: (method, member), for PEFT0016.
        var firstUse = new Dictionary<string, (string Method, string Member)>(StringComparer.Ordinal);

        foreach (var member in model.Members)
        {
            if (member.Adapters.Count == 0) continue;
            var adapters = member.Adapters;

            if (!member.AcceptsWrapper)
            {
                problems.Add(new PeftProblem(
                    PeftDiagnosticIds.WrongMemberType, PeftProblemTarget.MemberType, member.Name, 0, null,
                    Args(adapters[0].Method, member.Name,
                        "a member of type Module<Tensor, Tensor> that can hold the adapter wrapper",
                        "it is declared as '" + DisplayTypeName(member.TypeName) + "'")));
            }

            if (member.IsReadOnly)
            {
                problems.Add(new PeftProblem(
                    PeftDiagnosticIds.ReadOnlyMember, PeftProblemTarget.Member, member.Name, -1, null,
                    Args(member.Name, member.IsProperty ? "a property without a setter" : "a readonly field")));
            }

            var namesOnMember = new HashSet<string>(StringComparer.Ordinal);

            for (int i = 0; i < adapters.Count; i++)
            {
                var adapter = adapters[i];
                var spec = MethodCatalogue.Get(adapter.Method);
                string attribute = adapter.Method;

                if (ValidateLayer(problems, member, adapter, i, spec, adapters))
                {
                    spec.Validate(new ValidationContext(problems, member, adapter, i, spec));
                }

                if (member.Frozen || model.FrozenClass)
                {
                    problems.Add(new PeftProblem(
                        PeftDiagnosticIds.AdapterOnFrozen, PeftProblemTarget.Attribute, member.Name, i, null,
                        Args(attribute, member.Name, member.Frozen
                            ? "the member is marked [Freeze]"
                            : "class '" + className + "' is marked [Freeze]")));
                }

                if (!namesOnMember.Add(adapter.AdapterName))
                {
                    problems.Add(new PeftProblem(
                        PeftDiagnosticIds.DuplicateAdapterName, PeftProblemTarget.AttributeArgument, member.Name, i, "Name",
                        Args(member.Name, adapter.AdapterName)));
                }
                else if (firstUse.TryGetValue(adapter.AdapterName, out var first))
                {
                    if (first.Method != adapter.Method)
                    {
                        problems.Add(new PeftProblem(
                            PeftDiagnosticIds.AdapterNameMethodConflict, PeftProblemTarget.AttributeArgument, member.Name, i, "Name",
                            Args(adapter.AdapterName, attribute, first.Method, first.Member)));
                    }
                }
                else
                {
                    firstUse.Add(adapter.AdapterName, (adapter.Method, member.Name));
                }
            }
        }

        ValidateAdaptable(problems, model, className);
        ValidateSiblings(problems, model, className);

        if (maxTrainableParameters is long budget)
        {
            var count = CountTrainableParameters(model);
            if (count.Counted > budget)
            {
                problems.Add(ClassProblem(PeftDiagnosticIds.OverBudget,
                    className, FormatCount(count.Counted), FormatCount(budget),
                    count.UncountedAdapters.ToString(CultureInfo.InvariantCulture)));
            }
        }

        return problems.ToImmutable();
    }

    /// <summary>The layer kinds every adapter on the member accepts (Unknown when they exclude each other).</summary>
    private static LayerKind CommonLayerKinds(MemberModel member)
    {
        var kinds = LayerKind.Linear | LayerKind.Embedding | LayerKind.Norm;
        foreach (var adapter in member.Adapters) kinds &= MethodCatalogue.Get(adapter.Method).LayerKinds;
        return kinds;
    }

    /// <summary>PEFT0006 when the member's layer (seen by the compiler) is of a kind the method does not adapt, or another
    /// attribute on the member needs another kind; false when the adapter's values cannot be judged against the layer.</summary>
    private static bool ValidateLayer(
        ImmutableArray<PeftProblem>.Builder problems, MemberModel member, AdapterModel adapter, int index, MethodSpec spec,
        EquatableArray<AdapterModel> adapters)
    {
        var layer = member.Layer;
        if (layer is not null && (layer.Kind & spec.LayerKinds) == 0)
        {
            string found = layer.Kind switch
            {
                LayerKind.Linear => "it is built with Linear(...)",
                LayerKind.Embedding => "it is built with Embedding(...)",
                LayerKind.Norm => "it is built with LayerNorm(...)",
                _ => "it is built with a TorchSharp layer other than Linear, Embedding or LayerNorm",
            };
            problems.Add(new PeftProblem(PeftDiagnosticIds.WrongMemberType, PeftProblemTarget.Attribute, member.Name, index, null,
                Args(spec.Name, member.Name, spec.LayerKindText, found)));
            return false;
        }

        if (layer is null)
        {
            // The layer is not visible to the compiler, but one member holds one layer: two attributes that need layers of
            // different kinds cannot both apply.
            foreach (var other in adapters)
            {
                var otherSpec = MethodCatalogue.Get(other.Method);
                if ((otherSpec.LayerKinds & spec.LayerKinds) == 0 && IndexOf(adapters, other) < index)
                {
                    problems.Add(new PeftProblem(PeftDiagnosticIds.WrongMemberType, PeftProblemTarget.Attribute, member.Name, index, null,
                        Args(spec.Name, member.Name, spec.LayerKindText,
                            "the member also has [" + other.Method + "], which needs " + otherSpec.LayerKindText)));
                    return false;
                }
            }
        }

        return true;
    }

    private static int IndexOf(EquatableArray<AdapterModel> adapters, AdapterModel adapter)
    {
        for (int i = 0; i < adapters.Count; i++)
        {
            if (ReferenceEquals(adapters[i], adapter)) return i;
        }
        return -1;
    }

    /// <summary>The trainable parameters of one class that the compiler can count.</summary>
    /// <param name="Counted">Parameters of the adapters and [Trainable] layers whose sizes are compile-time constants.</param>
    /// <param name="UncountedAdapters">Trainable adapters and [Trainable] members left out because their layer or its sizes are unknown.</param>
    internal readonly record struct TrainableParameterCount(long Counted, int UncountedAdapters);

    /// <summary>
    /// Counts the trainable adapter parameters of <paramref name="model"/>: every adapter that is not frozen (by [Freeze] on
    /// the member or the class) and whose layer sizes are compile-time constants. Adapters that are errors of their own (a
    /// rank or virtual token count that is not positive, Factor 0, the wrong layer kind) are left out of both numbers.
    /// A fully trainable [Trainable] member counts every parameter of its layer: <c>Linear(in, out)</c> is
    /// <c>in·out</c> plus <c>out</c> with a bias, <c>Embedding(n, d)</c> is <c>n·d</c>; any other [Trainable] member is uncounted.
    /// Parameters an adapter's layers share (<see cref="MethodSpec.CountSharedParameters"/>) count once per adapter name.
    /// </summary>
    public static TrainableParameterCount CountTrainableParameters(PeftClassModel model)
    {
        long counted = 0;
        int uncounted = 0;
        if (model.FrozenClass) return new TrainableParameterCount(0, 0);
        var sharedCounted = new HashSet<(string Method, string AdapterName)>();
        foreach (var member in model.Members)
        {
            if (member.Frozen) continue;
            if (member.Trainable)
            {
                long? whole = CountLayerParameters(member.Layer);
                if (whole is long w) counted = SaturatingAdd(counted, w);
                else uncounted++;
            }
            foreach (var adapter in member.Adapters)
            {
                // An adapter that is an error of its own (a bad rank, the wrong layer) is neither counted nor "unknown".
                if (IsInvalidForCounting(adapter, member.Layer)) continue;
                long? count = CountAdapterParameters(adapter, member.Layer);
                if (count is long c) counted = SaturatingAdd(counted, c);
                else uncounted++;

                // Parameters the adapter's layers share (VB-LoRA's vector bank) count once per adapter of the class.
                if (sharedCounted.Add((adapter.Method, adapter.AdapterName)))
                {
                    counted = SaturatingAdd(counted, MethodCatalogue.Get(adapter.Method).CountSharedParameters(adapter));
                }
            }
        }
        return new TrainableParameterCount(counted, uncounted);
    }

    /// <summary>Every parameter of a layer the compiler can see: <c>Linear(in, out)</c> is <c>in·out</c> (+ <c>out</c> with a
    /// bias), <c>Embedding(n, d)</c> is <c>n·d</c>; null when the layer, a size or the bias flag is unknown.</summary>
    public static long? CountLayerParameters(LayerInfo? layer)
    {
        if (layer is not { InFeatures: long a, OutFeatures: long b } || a <= 0 || b <= 0) return null;
        return layer.Kind switch
        {
            LayerKind.Linear when layer.HasBias is bool bias => SaturatingAdd(SaturatingMultiply(a, b), bias ? b : 0),
            LayerKind.Embedding => SaturatingMultiply(a, b),
            LayerKind.Norm when layer.HasAffine is false => 0,
            LayerKind.Norm when layer.HasBias is bool normBias => normBias ? SaturatingAdd(a, a) : a,
            _ => null,
        };
    }

    private static long SaturatingMultiply(long a, long b) => global::Peft.Generators.Rules.SaturatingMath.Multiply(a, b);

    private static bool IsInvalidForCounting(AdapterModel adapter, LayerInfo? layer)
    {
        var spec = MethodCatalogue.Get(adapter.Method);
        if (!spec.IsCountable(adapter)) return true;
        return layer is not null && (layer.Kind & spec.LayerKinds) == 0;
    }

    /// <summary>
    /// The trainable parameters one adapter adds to <paramref name="layer"/>, or null when the layer, its sizes, or the
    /// adapter's own size are not known (or not valid) at compile time.
    /// </summary>
    public static long? CountAdapterParameters(AdapterModel adapter, LayerInfo? layer)
    {
        if (layer is null || layer.InFeatures is not long first || layer.OutFeatures is not long second) return null;
        if (first <= 0 || second <= 0) return null;
        var spec = MethodCatalogue.Get(adapter.Method);
        if ((layer.Kind & spec.LayerKinds) == 0 || !spec.IsCountable(adapter)) return null;
        return spec.CountParameters(adapter, layer, first, second);
    }

    /// <summary>"Attention" or "Outer.Inner&lt;T&gt;": how the class is named in messages.</summary>
    public static string ClassDisplayName(PeftClassModel model)
        => string.Join(".", model.Hierarchy.Types.Select(t => t.Name + t.TypeParameterList));

    /// <summary>Formats a parameter count for messages: invariant culture with thousands separators (1,234,567).</summary>
    public static string FormatCount(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string DisplayTypeName(string fullyQualified) => fullyQualified.Replace("global::", string.Empty);

    private static long SaturatingAdd(long a, long b) => global::Peft.Generators.Rules.SaturatingMath.Add(a, b);

    private static EquatableArray<string> Args(params string[] args) => new(args);

    private static PeftProblem ClassProblem(string id, params string[] args)
        => new(id, PeftProblemTarget.Class, null, -1, null, Args(args));

    private static PeftProblem ArgumentProblem(string id, MemberModel member, int index, string argument, params string[] args)
        => new(id, PeftProblemTarget.AttributeArgument, member.Name, index, argument, Args(args));
}
