namespace Peft;

/// <summary>
/// A module whose adapted linear members consume the same input in <c>forward</c>, listed as groups of member (child
/// module) names in the order <c>forward</c> calls them. The generator implements it for annotated and <c>[Adaptable]</c>
/// classes, with groups found from the syntax of <c>forward</c> (or <c>Forward</c>) or declared with
/// <see cref="FuseProjectionsAttribute"/>. That is how the model families get theirs: Llama's q/k/v and gate/up, BERT's
/// query/key/value, USE-lite's q/k/v. A class may also implement it by hand.
/// <c>model.FuseSiblingProjections()</c> links each group so that it runs as one product.
/// </summary>
public interface ISiblingProjections
{
    /// <summary>The groups: each lists two or more child module names, the first being the one <c>forward</c> calls first.</summary>
    IReadOnlyList<IReadOnlyList<string>> SiblingProjections { get; }
}
