using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

internal static partial class PeftModelValidator
{
    /// <summary>
    /// The members configuration targeting looks at (the emitted <c>PeftTargetMembers</c>): module members typed to hold a
    /// wrapper, declared as <c>Linear</c> or <c>LayerNorm</c>, or built with <c>Linear(...)</c>, <c>LayerNorm(...)</c> or
    /// <c>Embedding(...)</c>, but not built with another TorchSharp layer; each with the reason it cannot be targeted (null
    /// when it can).
    /// </summary>
    public static IEnumerable<(MemberModel Member, string? Reason)> TargetMembers(PeftClassModel model)
    {
        foreach (var member in model.Members)
        {
            if (member.Component != ComponentKind.Module) continue;
            bool layerish = member.AcceptsWrapper || member.IsLinearType || member.IsNormType
                || member.Layer is { Kind: LayerKind.Linear or LayerKind.Norm or LayerKind.Embedding };
            // Built with another TorchSharp layer (ReLU(), Conv1d(...)): never a layer to target.
            if (!layerish || member.Layer is { Kind: LayerKind.Unknown }) continue;
            yield return (member, NotTargetableReason(member));
        }
    }

    private static string? NotTargetableReason(MemberModel member)
    {
        if (!member.AcceptsWrapper)
        {
            return "member '" + member.Name + "' is declared as '" + DisplayTypeName(member.TypeName)
                + "', which cannot hold the adapter wrapper (declare it as Module<Tensor, Tensor>)";
        }
        if (member.IsReadOnly)
        {
            return "member '" + member.Name + "' is " + (member.IsProperty ? "a property without a setter" : "a readonly field")
                + ", so the wrapper cannot be stored in it (make it writable)";
        }
        return null;
    }

    /// <summary>PEFT0017: in an [Adaptable] class every linear member must be targetable (a norm member typed
    /// <c>LayerNorm</c> is listed with its reason, so a run-time target names it, but is not an error).</summary>
    private static void ValidateAdaptable(ImmutableArray<PeftProblem>.Builder problems, PeftClassModel model, string className)
    {
        if (!model.Adaptable) return;
        foreach (var (member, reason) in TargetMembers(model))
        {
            if (reason is null) continue;
            if (member.IsNormType || member.Layer is { Kind: LayerKind.Norm or LayerKind.Embedding }) continue;
            // An adapter attribute on the member already reports the same problem (PEFT0006 / PEFT0012).
            if (member.Adapters.Count > 0) continue;
            problems.Add(new PeftProblem(
                PeftDiagnosticIds.UntargetableMember,
                member.AcceptsWrapper ? PeftProblemTarget.Member : PeftProblemTarget.MemberType,
                member.Name, -1, null,
                Args(member.Name, className, reason)));
        }
    }
}
