namespace Peft;

/// <summary>
/// Implemented by generated code on every module class that carries PEFT attributes (a method's attribute such as
/// <see cref="LoRAAttribute"/>, or <see cref="FreezeAttribute"/>, <see cref="TrainableAttribute"/>,
/// <see cref="AdaptableAttribute"/>). The runtime reads the descriptor instead of reflecting over the class.
/// </summary>
public interface IPeftModule
{
    /// <summary>The compile-time description of the class's PEFT annotations.</summary>
    PeftModuleDescriptor PeftDescriptor { get; }
}

/// <summary>One adapter declared by an attribute on a member.</summary>
/// <param name="MemberName">The member (field or property) name, which is also its registered module name.</param>
/// <param name="AdapterName">The adapter name (PEFT's adapter_name).</param>
/// <param name="Method">The adapter's method: <see cref="PeftMethod.Name"/> of a method registered in <see cref="PeftMethods"/>.</param>
public sealed record PeftAdapterDeclaration(string MemberName, string AdapterName, string Method);

/// <summary>
/// What the source generator knows about one annotated module class: which members are frozen or kept trainable
/// and which adapters are declared. Member names are the names under which the members are registered
/// (<c>register_module</c> / <c>register_parameter</c>).
/// </summary>
public sealed class PeftModuleDescriptor
{
    private readonly HashSet<string> _frozen;
    private readonly HashSet<string> _trainable;

    /// <summary>Creates a descriptor (called from generated code).</summary>
    /// <param name="typeName">The annotated class's name, used in messages.</param>
    /// <param name="frozenClass">True when the class itself carries <see cref="FreezeAttribute"/>: every instance is frozen, adapters included.</param>
    /// <param name="frozenMembers">Members marked <see cref="FreezeAttribute"/>.</param>
    /// <param name="trainableMembers">Members marked <see cref="TrainableAttribute"/>.</param>
    /// <param name="adapters">The adapters declared on members of the class.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public PeftModuleDescriptor(
        string typeName,
        bool frozenClass,
        IReadOnlyList<string> frozenMembers,
        IReadOnlyList<string> trainableMembers,
        IReadOnlyList<PeftAdapterDeclaration> adapters)
    {
        ArgumentNullException.ThrowIfNull(typeName);
        ArgumentNullException.ThrowIfNull(frozenMembers);
        ArgumentNullException.ThrowIfNull(trainableMembers);
        ArgumentNullException.ThrowIfNull(adapters);
        TypeName = typeName;
        FrozenClass = frozenClass;
        FrozenMembers = frozenMembers;
        TrainableMembers = trainableMembers;
        Adapters = adapters;
        _frozen = new HashSet<string>(frozenMembers, StringComparer.Ordinal);
        _trainable = new HashSet<string>(trainableMembers, StringComparer.Ordinal);
    }

    /// <summary>The annotated class's name.</summary>
    public string TypeName { get; }

    /// <summary>True when the whole class is marked <see cref="FreezeAttribute"/>.</summary>
    public bool FrozenClass { get; }

    /// <summary>Members marked <see cref="FreezeAttribute"/>.</summary>
    public IReadOnlyList<string> FrozenMembers { get; }

    /// <summary>Members marked <see cref="TrainableAttribute"/>.</summary>
    public IReadOnlyList<string> TrainableMembers { get; }

    /// <summary>The adapters declared on members of the class.</summary>
    public IReadOnlyList<PeftAdapterDeclaration> Adapters { get; }

    /// <summary>Whether the member registered under <paramref name="memberName"/> is marked <see cref="FreezeAttribute"/>.</summary>
    /// <param name="memberName">A registered child module or parameter name.</param>
    public bool IsFrozenMember(string memberName) => _frozen.Contains(memberName);

    /// <summary>Whether the member registered under <paramref name="memberName"/> is marked <see cref="TrainableAttribute"/>.</summary>
    /// <param name="memberName">A registered child module or parameter name.</param>
    public bool IsTrainableMember(string memberName) => _trainable.Contains(memberName);
}
