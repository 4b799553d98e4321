namespace Peft.Generators.Model;

// Immutable, structurally equal descriptions of what the user declared. They hold only strings,
// numbers, enums and EquatableArrays: never an ISymbol, SyntaxNode, Compilation or Location, so the
// incremental pipeline can cache them and an unrelated edit leaves generated code untouched.

/// <summary>One partial class that declares PEFT attributes: everything the emitter needs.</summary>
/// <param name="Hierarchy">Where the class lives (namespace, containing types) and its file name.</param>
/// <param name="FrozenClass">True when the class itself carries [Freeze].</param>
/// <param name="Members">Every registrable member (modules, parameters, buffers) in declaration order,
/// with the PEFT declarations on it. The generated registration replaces TorchSharp's reflection-based
/// RegisterComponents(), so non-annotated modules are listed too.</param>
/// <param name="IsPartial">True when the class and every containing type are declared partial (else nothing can be emitted).</param>
/// <param name="IsModule">True when the class derives from TorchSharp.torch.nn.Module.</param>
internal sealed record PeftClassModel(
    HierarchyInfo Hierarchy,
    bool FrozenClass,
    EquatableArray<MemberModel> Members,
    bool IsPartial,
    bool IsModule)
{
    /// <summary>
    /// True when a base class already has a public <c>PeftDescriptor</c> (it implements <c>Peft.IPeftModule</c> in a
    /// referenced assembly, or it is a PEFT class of this compilation that gets generated code): the generated
    /// property is then declared <c>new</c> (CS0108 otherwise). Not a constructor parameter, so existing callers keep compiling.
    /// </summary>
    public bool BaseHasPeftDescriptor { get; init; }

    /// <summary>
    /// True when the class carries <c>[Adaptable]</c>: it opts in to configuration targeting, and a linear member that
    /// cannot hold the adapter wrapper is an error (PEFT0017) instead of being reported as untargetable at run time.
    /// </summary>
    public bool Adaptable { get; init; }

    /// <summary>
    /// The calls of the class's members in its <c>forward</c> methods (<c>m.call(arg)</c>, <c>m.forward(arg)</c>,
    /// <c>this.m.call(arg)</c>), in textual order: what sibling projections are found from (<c>SiblingProjectionParser</c>).
    /// </summary>
    public EquatableArray<ForwardCallModel> ForwardCalls { get; init; } = EquatableArray<ForwardCallModel>.Empty;

    /// <summary>The <c>[FuseProjections("g")]</c> declarations on the class's instance fields and properties, in declaration order.</summary>
    public EquatableArray<FuseDeclarationModel> FuseDeclarations { get; init; } = EquatableArray<FuseDeclarationModel>.Empty;

    /// <summary>
    /// True when the class lists <c>Peft.ISiblingProjections</c> in a hand-written declaration, or a base class implements it:
    /// the generated implementation would then duplicate or hide that one, so none is emitted.
    /// </summary>
    public bool SiblingProjectionsByHand { get; init; }
}

/// <summary>How the argument of a member call in <c>forward</c> is written.</summary>
internal enum CallArgumentKind
{
    /// <summary>A parameter or local of the <c>forward</c> method, assigned nowhere but at its declaration.</summary>
    Identifier = 0,

    /// <summary>A parameter or local of the <c>forward</c> method that is assigned again (or declared twice): not one value.</summary>
    ReassignedIdentifier = 1,

    /// <summary>Any other expression (a call, an operator, a field): compared by its text only.</summary>
    Expression = 2,
}

/// <summary>One call <c>m.call(arg)</c> / <c>m.forward(arg)</c> of a member of the class in one of its <c>forward</c> methods.</summary>
/// <param name="Member">The member called.</param>
/// <param name="Argument">The argument's text (its identifier, or the expression without trivia).</param>
/// <param name="Kind">How the argument is written.</param>
/// <param name="Scope">Which <c>forward</c> method (0, 1, ... in source order): identifiers of different methods are different values.</param>
internal sealed record ForwardCallModel(string Member, string Argument, CallArgumentKind Kind, int Scope);

/// <summary>A <c>[FuseProjections(group)]</c> on a member.</summary>
/// <param name="Member">The member it is on.</param>
/// <param name="Group">The group's name (null when the argument is null).</param>
internal sealed record FuseDeclarationModel(string Member, string? Group);

/// <summary>The namespace and the chain of types that contain the annotated class (outermost first).</summary>
/// <param name="Namespace">The namespace, or "" for the global namespace.</param>
/// <param name="Types">Containing types, outermost first, ending with the annotated class itself.</param>
internal sealed record HierarchyInfo(string Namespace, EquatableArray<TypeDeclarationInfo> Types)
{
    /// <summary>File hint: "Ns.Outer.Inner.g.cs" style (generic arity appended as `N), unique per type.</summary>
    public string HintName
    {
        get
        {
            var parts = new System.Collections.Generic.List<string>();
            if (Namespace.Length > 0) parts.Add(Namespace);
            foreach (var t in Types) parts.Add(t.TypeParameterCount > 0 ? t.Name + "`" + t.TypeParameterCount : t.Name);
            return string.Join(".", parts) + ".Peft.g.cs";
        }
    }
}

/// <summary>A type declaration in the hierarchy.</summary>
/// <param name="Keyword">"class", "record", "struct", "record struct" or "interface": the keyword to repeat in the
/// partial declaration (containing types may be structs or interfaces; the annotated class itself is a class).</param>
/// <param name="Name">The simple name.</param>
/// <param name="TypeParameterList">E.g. "&lt;T&gt;" or "" (emitted verbatim).</param>
/// <param name="TypeParameterCount">Number of type parameters.</param>
internal sealed record TypeDeclarationInfo(string Keyword, string Name, string TypeParameterList, int TypeParameterCount);

/// <summary>What TorchSharp registration a member needs.</summary>
internal enum ComponentKind
{
    /// <summary>Not registered (not a module, parameter or tensor).</summary>
    None = 0,
    /// <summary>A <c>torch.nn.Module</c> (registered with register_module).</summary>
    Module = 1,
    /// <summary>A <c>TorchSharp.Modules.Parameter</c> (registered with register_parameter).</summary>
    Parameter = 2,
    /// <summary>A plain <c>torch.Tensor</c> (registered with register_buffer, as RegisterComponents does).</summary>
    Buffer = 3,
}

/// <summary>A field or property of the annotated class.</summary>
/// <param name="Name">The member name; also the registered module/parameter name (the state-dict key segment).</param>
/// <param name="IsProperty">True for a property, false for a field.</param>
/// <param name="TypeName">The member type, fully qualified with global:: (for casts in emitted code).</param>
/// <param name="Component">How the member is registered.</param>
/// <param name="Frozen">[Freeze] on the member.</param>
/// <param name="Trainable">[Trainable] on the member.</param>
/// <param name="Adapters">Adapters declared on the member, in source order.</param>
/// <param name="Layer">What the member's initializer/constructor assignment builds, when the compiler can tell.</param>
/// <param name="IsReadOnly">A readonly field or a property without a setter (generated code cannot replace it).</param>
/// <param name="AcceptsWrapper">The member type can hold the runtime's wrapper layers (Module&lt;Tensor, Tensor&gt; or a base of it).</param>
internal sealed record MemberModel(
    string Name,
    bool IsProperty,
    string TypeName,
    ComponentKind Component,
    bool Frozen,
    bool Trainable,
    EquatableArray<AdapterModel> Adapters,
    LayerInfo? Layer,
    bool IsReadOnly,
    bool AcceptsWrapper)
{
    /// <summary>The member is declared as TorchSharp's sealed <c>Linear</c> (it holds a linear layer but cannot hold the wrapper).</summary>
    public bool IsLinearType { get; init; }

    /// <summary>The member is declared as TorchSharp's sealed <c>LayerNorm</c> (a norm that cannot hold the wrapper).</summary>
    public bool IsNormType { get; init; }
}

/// <summary>How an attribute argument's value is read and written.</summary>
internal enum ArgumentKind
{
    Int = 0,
    Double = 1,
    Bool = 2,
    String = 3,
    Enum = 4,
}

/// <summary>One attribute argument with its value resolved (the default applied when it is not written).</summary>
/// <param name="Name">The argument's name in the attribute (constructor parameter or named property).</param>
/// <param name="Kind">How the value is held.</param>
/// <param name="Integer">The value of an Int, Bool (0/1) or Enum argument.</param>
/// <param name="Number">The value of a Double argument.</param>
/// <param name="Text">The value of a String argument (null when null).</param>
/// <param name="Written">True when the user wrote the argument (diagnostics point at it; otherwise at the attribute).</param>
internal sealed record ArgumentValue(string Name, ArgumentKind Kind, long Integer, double Number, string? Text, bool Written);

/// <summary>
/// One adapter attribute on a member, generic over methods: the method's catalogue name, the adapter name and every
/// argument the method's spec declares, resolved. The emitter and the validator know no method by name; they ask the
/// method's spec (<c>MethodCatalogue</c>) what the arguments mean.
/// </summary>
/// <param name="Method">The method's name (<c>MethodSpec.Name</c>, e.g. "LoRA").</param>
/// <param name="AdapterName">The adapter name (Name = ...), "default" unless given.</param>
/// <param name="Arguments">The arguments in the spec's order.</param>
internal sealed record AdapterModel(string Method, string AdapterName, EquatableArray<ArgumentValue> Arguments)
{
    /// <summary>The argument named <paramref name="name"/> (the spec guarantees it exists).</summary>
    public ArgumentValue Argument(string name)
    {
        foreach (var argument in Arguments)
        {
            if (argument.Name == name) return argument;
        }
        throw new System.ArgumentException("The method declares no argument '" + name + "'.", nameof(name));
    }

    /// <summary>An Int argument's value.</summary>
    public int Int(string name) => (int)Argument(name).Integer;

    /// <summary>A Double argument's value.</summary>
    public double Double(string name) => Argument(name).Number;

    /// <summary>A Bool argument's value.</summary>
    public bool Bool(string name) => Argument(name).Integer != 0;

    /// <summary>A String argument's value.</summary>
    public string? Text(string name) => Argument(name).Text;
}

/// <summary>The kind of TorchSharp layer a member is built from; as flags, the kinds a method adapts.</summary>
[System.Flags]
internal enum LayerKind
{
    Unknown = 0,
    Linear = 1,
    Embedding = 2,
    Norm = 4,
}

/// <summary>A layer constructor call the compiler can see (e.g. <c>Linear(512, 64)</c>).</summary>
/// <param name="Kind">Linear, Embedding or Norm (<c>LayerNorm(d)</c>).</param>
/// <param name="InFeatures">Linear in-features / Embedding vocabulary size / the normalised size, or null when not a compile-time constant.</param>
/// <param name="OutFeatures">Linear out-features / Embedding dimension / the normalised size, or null when not a compile-time constant.</param>
/// <param name="HasBias">Linear's <c>hasBias</c> or LayerNorm's <c>bias</c> argument when it is a compile-time constant (its
/// default, true, when omitted); null for other layers or when unknown.</param>
/// <param name="HasAffine">LayerNorm's <c>elementwise_affine</c> argument when it is a compile-time constant (true when
/// omitted): false means the norm has no parameters at all; null for other layers or when unknown.</param>
internal sealed record LayerInfo(LayerKind Kind, long? InFeatures, long? OutFeatures, bool? HasBias = null, bool? HasAffine = null)
{
    /// <summary>A Linear's <c>dtype</c> argument: "default" when omitted or null, the <c>ScalarType</c> member's name when a
    /// compile-time constant, null when not constant or for other layers.</summary>
    public string? DType { get; init; }
}
