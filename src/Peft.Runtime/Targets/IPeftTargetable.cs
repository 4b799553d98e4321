namespace Peft;

/// <summary>
/// Implemented by generated code on every module class the generator emits for (any PEFT attribute, or
/// <see cref="AdaptableAttribute"/>): the class's members that configuration targeting may adapt, and the generated
/// method that wraps them. The runtime finds these modules through TorchSharp's module registry
/// (<c>named_children()</c>), never by reflection.
/// </summary>
public interface IPeftTargetable
{
    /// <summary>
    /// The class's module members that may hold a linear layer, by registered name, each with the reason it cannot be
    /// targeted (null when it can).
    /// </summary>
    IReadOnlyList<PeftTargetMember> PeftTargetMembers { get; }

    /// <summary>
    /// Adapts every member whose full dotted name (<paramref name="prefix"/> + member name) <paramref name="plan"/>
    /// selects: wraps its layer (<see cref="PeftLayers.Wrap"/>), adds the planned adapter, stores the wrapper in the
    /// member and re-registers it under the same name. Generated; call <see cref="PeftTargeting.ApplyTargets"/> instead.
    /// </summary>
    /// <param name="prefix">The module's own full name followed by "." ("" for the root).</param>
    /// <param name="plan">The validated selection of full names and their adapters.</param>
    void ApplyPeftTargets(string prefix, PeftTargetPlan plan);
}

/// <summary>A member of an <see cref="IPeftTargetable"/> class that may hold a linear layer.</summary>
/// <param name="Name">The member name, which is also its registered module name.</param>
/// <param name="NotTargetableReason">Why configuration targeting cannot adapt it (readonly, a type that cannot hold
/// the wrapper, frozen), or null when it can.</param>
public sealed record PeftTargetMember(string Name, string? NotTargetableReason = null)
{
    /// <summary>True when the member can be adapted by configuration targeting.</summary>
    public bool IsTargetable => NotTargetableReason is null;
}
