namespace Peft;

/// <summary>
/// Declares that this adapted linear member and the other members carrying the same <see cref="Group"/> consume the same
/// input in <c>forward</c> (Llama's <c>q_proj</c>/<c>k_proj</c>/<c>v_proj</c>, <c>gate_proj</c>/<c>up_proj</c>), so
/// <c>model.FuseSiblingProjections()</c> can run them as one product. The generator also finds
/// such groups from the syntax of <c>forward</c> (the same argument passed to several adapted members' <c>call</c>); the
/// attribute states a group explicitly, and the analyzers warn (PEFT0052) where a declared group cannot apply.
/// </summary>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = false, Inherited = false)]
public sealed class FuseProjectionsAttribute : Attribute
{
    /// <summary>Declares the member part of the sibling group <paramref name="group"/>.</summary>
    /// <param name="group">The group's name; members of one class with the same name form one group.</param>
    public FuseProjectionsAttribute(string group)
    {
        Group = group;
    }

    /// <summary>The group's name.</summary>
    public string Group { get; }
}
