using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

/// <summary>Whether a sibling group was found from <c>forward</c>'s calls or declared with <c>[FuseProjections]</c>.</summary>
internal enum SiblingGroupKind
{
    /// <summary>Adapted linear members that <c>forward</c> calls with one parameter or local.</summary>
    Automatic = 0,

    /// <summary>Members carrying <c>[FuseProjections]</c> with one group name.</summary>
    Declared = 1,
}

/// <summary>One sibling projection group of a class.</summary>
/// <param name="Kind">Found or declared.</param>
/// <param name="Name">The shared argument (automatic) or the group name (declared).</param>
/// <param name="Members">The members, in the order <c>forward</c> first calls them (declaration order for those it never calls).</param>
/// <param name="FirstCall">Index in <see cref="PeftClassModel.ForwardCalls"/> of the group's first call, or -1.</param>
internal sealed record SiblingGroup(SiblingGroupKind Kind, string Name, EquatableArray<string> Members, int FirstCall);

internal static partial class PeftModelValidator
{
    /// <summary>
    /// Whether the class gets <c>ISiblingProjections</c>: not when it derives from a PEFT class (as for <c>IPeftTargetable</c>,
    /// the base's explicit implementation stays in force) and not when it or a base implements the interface by hand.
    /// </summary>
    public static bool EmitsSiblingProjections(PeftClassModel model) => !model.BaseHasPeftDescriptor && !model.SiblingProjectionsByHand;

    /// <summary>
    /// The groups the generated <c>ISiblingProjections</c> lists: the automatic groups and the declared groups without a
    /// PEFT0052 problem, ordered by their first call in <c>forward</c> (declared groups it never calls last); empty when the
    /// class gets no implementation (<see cref="EmitsSiblingProjections"/>).
    /// </summary>
    public static IReadOnlyList<SiblingGroup> EmittedSiblingGroups(PeftClassModel model)
    {
        if (!EmitsSiblingProjections(model)) return Array.Empty<SiblingGroup>();
        var problems = ImmutableArray.CreateBuilder<PeftProblem>();
        var groups = AutomaticGroups(model).ToList();
        foreach (var group in DeclaredGroups(model))
        {
            if (!ValidateDeclaredGroup(problems, model, group)) groups.Add(group);
        }
        return groups.OrderBy(g => g.FirstCall < 0 ? int.MaxValue : g.FirstCall).ToList();
    }

    /// <summary>PEFT0051 for each automatic group the class gets (none when no code is generated: the errors say why),
    /// PEFT0052 for each problem of a declared group.</summary>
    private static void ValidateSiblings(ImmutableArray<PeftProblem>.Builder problems, PeftClassModel model, string className)
    {
        if (CanEmit(model) && EmitsSiblingProjections(model))
        {
            foreach (var group in AutomaticGroups(model))
            {
                string members = string.Join(", ", group.Members.Select(m => "'" + m + "'"));
                problems.Add(new PeftProblem(PeftDiagnosticIds.SiblingProjections, PeftProblemTarget.ForwardCall, group.Members[0],
                    group.FirstCall, null, Args(members, className, group.Name)));
            }
        }
        foreach (var group in DeclaredGroups(model)) ValidateDeclaredGroup(problems, model, group);
    }

    /// <summary>
    /// The groups found from <c>forward</c>: adapted linear members (<see cref="IsAdaptedLinear"/>) without
    /// <c>[FuseProjections]</c>, each called with one parameter or local only (one that is assigned nowhere but at its
    /// declaration), grouped by it; two or more members make a group.
    /// </summary>
    private static IEnumerable<SiblingGroup> AutomaticGroups(PeftClassModel model)
    {
        var declared = new HashSet<string>(model.FuseDeclarations.Select(d => d.Member), StringComparer.Ordinal);
        var arguments = new Dictionary<string, HashSet<(int Scope, string Argument, CallArgumentKind Kind)>>(StringComparer.Ordinal);
        var firstCall = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < model.ForwardCalls.Count; i++)
        {
            var call = model.ForwardCalls[i];
            if (declared.Contains(call.Member) || Member(model, call.Member) is not { } member || IsAdaptedLinear(member, strict: true, model.Adaptable) is not null) continue;
            if (!arguments.TryGetValue(call.Member, out var set)) arguments[call.Member] = set = new();
            set.Add((call.Scope, call.Argument, call.Kind));
            if (!firstCall.ContainsKey(call.Member)) firstCall[call.Member] = i;
        }

        // Members called with exactly one argument, a stable identifier, keyed by (forward method, identifier).
        var byArgument = new Dictionary<(int Scope, string Argument), List<string>>();
        foreach (var pair in firstCall.OrderBy(p => p.Value))
        {
            var set = arguments[pair.Key];
            if (set.Count != 1) continue;
            var only = set.First();
            if (only.Kind != CallArgumentKind.Identifier) continue;
            var key = (only.Scope, only.Argument);
            if (!byArgument.TryGetValue(key, out var members)) byArgument[key] = members = new List<string>();
            members.Add(pair.Key);
        }
        foreach (var pair in byArgument.Where(p => p.Value.Count >= 2).OrderBy(p => firstCall[p.Value[0]]))
        {
            yield return new SiblingGroup(SiblingGroupKind.Automatic, pair.Key.Argument, pair.Value.ToEquatableArray(), firstCall[pair.Value[0]]);
        }
    }

    /// <summary>The <c>[FuseProjections]</c> groups by name (first declaration first), members in first-call order, the members
    /// <c>forward</c> never calls after them in declaration order. A declaration without a name is a group of its own.</summary>
    private static IEnumerable<SiblingGroup> DeclaredGroups(PeftClassModel model)
    {
        var names = new List<string?>();
        foreach (var declaration in model.FuseDeclarations)
        {
            if (declaration.Group is null || !names.Contains(declaration.Group)) names.Add(declaration.Group);
        }
        int unnamed = 0;
        foreach (string? name in names)
        {
            var declared = name is null
                ? new List<string> { model.FuseDeclarations.Where(d => d.Group is null).ElementAt(unnamed++).Member }
                : model.FuseDeclarations.Where(d => d.Group == name).Select(d => d.Member).ToList();
            var ordered = declared
                .Select((member, index) => (Member: member, Index: index, Call: FirstCallOf(model, member)))
                .OrderBy(m => m.Call < 0 ? int.MaxValue : m.Call).ThenBy(m => m.Index)
                .ToList();
            int first = ordered.Where(m => m.Call >= 0).Select(m => m.Call).DefaultIfEmpty(-1).Min();
            yield return new SiblingGroup(SiblingGroupKind.Declared, name ?? string.Empty, ordered.Select(m => m.Member).ToEquatableArray(), first);
        }
    }

    /// <summary>PEFT0052 for each reason a declared group cannot apply; true when there was one (the group is then not emitted).</summary>
    private static bool ValidateDeclaredGroup(ImmutableArray<PeftProblem>.Builder problems, PeftClassModel model, SiblingGroup group)
    {
        int before = problems.Count;
        void Report(PeftProblemTarget target, string member, int index, string reason)
            => problems.Add(new PeftProblem(PeftDiagnosticIds.SiblingGroupCannotApply, target, member, index, null,
                Args(Quote(group.Name), member, reason)));

        if (group.Name.Length == 0)
        {
            Report(PeftProblemTarget.FuseAttribute, group.Members[0], -1,
                "the group has no name; give it the name its sibling members share");
            return true;
        }
        if (group.Members.Count == 1)
        {
            Report(PeftProblemTarget.FuseAttribute, group.Members[0], -1,
                "no other member has this group name; give the members that take the same input in forward the same name, or remove the attribute");
        }
        if (!EmitsSiblingProjections(model))
        {
            Report(PeftProblemTarget.FuseAttribute, group.Members[0], -1, model.BaseHasPeftDescriptor
                ? "the class derives from a PEFT class, whose generated ISiblingProjections stays in force; declare the group in the base class"
                : "the class already implements ISiblingProjections by hand; list the group there and remove the attribute");
        }

        (string Member, long In)? firstSize = null;
        (string Member, string DType)? firstDType = null;
        foreach (string name in group.Members)
        {
            var member = Member(model, name);
            string? notAdapted = member is null ? NoAdapterReason : IsAdaptedLinear(member, strict: false, model.Adaptable);
            if (notAdapted is not null)
            {
                Report(PeftProblemTarget.FuseAttribute, name, -1, notAdapted);
                continue;
            }
            if (member!.Layer is { Kind: LayerKind.Linear, InFeatures: long inFeatures })
            {
                if (firstSize is null) firstSize = (name, inFeatures);
                else if (firstSize.Value.In != inFeatures)
                {
                    Report(PeftProblemTarget.FuseAttribute, name, -1, string.Format(CultureInfo.InvariantCulture,
                        "it is a Linear with {0} input features but '{1}' has {2}; members of one product take one input, so give them the same in_features or different group names",
                        inFeatures, firstSize.Value.Member, firstSize.Value.In));
                }
            }
            if (member.Layer is { Kind: LayerKind.Linear, DType: { } dtype })
            {
                if (firstDType is null) firstDType = (name, dtype);
                else if (firstDType.Value.DType != dtype)
                {
                    Report(PeftProblemTarget.FuseAttribute, name, -1,
                        "it is built with " + DTypeDisplay(dtype) + " but '" + firstDType.Value.Member + "' with " + DTypeDisplay(firstDType.Value.DType)
                        + "; one product runs in one dtype, so build them with the same dtype or give them different group names");
                }
            }
        }

        // Every call of a member must pass the argument the group's first call passes.
        string? argument = group.FirstCall >= 0 ? model.ForwardCalls[group.FirstCall].Argument : null;
        string? firstMember = group.FirstCall >= 0 ? model.ForwardCalls[group.FirstCall].Member : null;
        var reported = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; argument is not null && i < model.ForwardCalls.Count; i++)
        {
            var call = model.ForwardCalls[i];
            if (!group.Members.Contains(call.Member) || call.Argument == argument || !reported.Add(call.Member)) continue;
            Report(PeftProblemTarget.ForwardCall, call.Member, i,
                "forward passes it '" + call.Argument + "' but passes '" + argument + "' to '" + firstMember
                + "'; only members called with the same input run as one product, so pass them the same tensor or remove the member from the group");
        }
        return problems.Count > before;
    }

    private const string AdaptableNotLinearReason =
        "it is not a writable member built with Linear(...), so configuration targeting cannot wrap it into an AdaptedLinear; build it with Linear(in, out) in a Module<Tensor, Tensor> member, or remove [FuseProjections]";

    private const string NoAdapterReason =
        "it has no adapter attribute, so it is not wrapped into an AdaptedLinear; add one (such as [LoRA]) or remove [FuseProjections]";

    /// <summary>
    /// Null when the member is wrapped into an <c>AdaptedLinear</c> by the generated code, or, in an <c>[Adaptable]</c>
    /// class, can be by configuration targeting (a writable member built with <c>Linear(..)</c>; the run time then links the
    /// members that were adapted), else why not. Strict (the automatic groups): the layer must be seen to be a
    /// <c>Linear(..)</c>, or be unknown with adapters that adapt linear layers only. A member whose type or writability is an
    /// error of its own (PEFT0006, PEFT0012) is not one.
    /// </summary>
    private static string? IsAdaptedLinear(MemberModel member, bool strict, bool adaptable)
    {
        if (member.Adapters.Count == 0)
        {
            bool targetable = adaptable && member.AcceptsWrapper && !member.IsReadOnly
                && (member.Layer is { Kind: LayerKind.Linear } || (!strict && member.Layer is null));
            return targetable ? null : adaptable ? AdaptableNotLinearReason : NoAdapterReason;
        }

        var kinds = CommonLayerKinds(member);
        if ((kinds & LayerKind.Linear) == 0)
        {
            return "its adapter " + string.Join(", ", member.Adapters.Select(a => "[" + a.Method + "]").Distinct())
                + " does not adapt linear layers; only adapted Linear layers run as one product, so remove [FuseProjections]";
        }
        if (member.Layer is { Kind: not LayerKind.Linear })
        {
            return "it is not built with Linear(...); only adapted Linear layers run as one product, so remove [FuseProjections]";
        }
        if (!member.AcceptsWrapper || member.IsReadOnly) return strict ? "not writable as a wrapper" : null;
        if (strict && member.Layer is null && kinds != LayerKind.Linear) return "layer unknown";
        return null;
    }

    private static MemberModel? Member(PeftClassModel model, string name)
    {
        foreach (var member in model.Members)
        {
            if (member.Name == name) return member;
        }
        return null;
    }

    private static int FirstCallOf(PeftClassModel model, string member)
    {
        for (int i = 0; i < model.ForwardCalls.Count; i++)
        {
            if (model.ForwardCalls[i].Member == member) return i;
        }
        return -1;
    }

    private static string DTypeDisplay(string dtype) => dtype == PeftParser.DefaultDType ? "the default dtype" : "dtype " + dtype;

    private static string Quote(string text) => text.Replace("\\", "\\\\").Replace("\"", "\\\"");
}
