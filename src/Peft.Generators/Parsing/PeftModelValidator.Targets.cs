using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

internal static partial class PeftModelValidator
{
    /// <summary>
    /// The members configuration targeting looks at (the emitted <c>PeftTargetMembers</c>): module members that are not
    /// prompt-tuned embeddings and that are typed to hold a wrapper, declared as <c>Linear</c>, or built with
    /// <c>Linear(...)</c>, but not built with another TorchSharp layer; each with the reason it cannot be targeted (null
    /// when it can).
    /// </summary>
    public static IEnumerable<(MemberModel Member, string? Reason)> TargetMembers(PeftClassModel model)
    {
        foreach (var member in model.Members)
        {
            if (member.Component != ComponentKind.Module) continue;
            if (member.Adapters.Any(a => a.Method == PeftMethodKind.PromptTune)) continue;
            bool linearish = member.AcceptsWrapper || member.IsLinearType || member.Layer is { Kind: LayerKind.Linear };
            // Built with another TorchSharp layer (ReLU(), Embedding(...)): never a linear layer to target.
            if (!linearish || member.Layer is { Kind: LayerKind.Embedding or LayerKind.Unknown }) continue;
            yield return (member, NotTargetableReason(member));
        }
    }

    private static string? NotTargetableReason(MemberModel member)
    {
        if (!member.AcceptsWrapper)
        {
            return "member '" + member.Name + "' is declared as '" + DisplayTypeName(member.TypeName)
                + "', which cannot hold the AdaptedLinear wrapper (declare it as Module<Tensor, Tensor>)";
        }
        if (member.IsReadOnly)
        {
            return "member '" + member.Name + "' is " + (member.IsProperty ? "a property without a setter" : "a readonly field")
                + ", so the wrapper cannot be stored in it (make it writable)";
        }
        return null;
    }

    /// <summary>PEFT0017: in an [Adaptable] class every linear member must be targetable.</summary>
    private static void ValidateAdaptable(ImmutableArray<PeftProblem>.Builder problems, PeftClassModel model, string className)
    {
        if (!model.Adaptable) return;
        foreach (var (member, reason) in TargetMembers(model))
        {
            if (reason is null) continue;
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
