namespace Peft;

/// <summary>
/// A module whose adapted linear members consume the same input in <c>forward</c>, listed as groups of member (child
/// module) names in the order <c>forward</c> calls them. The generator implements it for annotated classes (groups found
/// from <c>forward</c>'s syntax or declared with <see cref="FuseProjectionsAttribute"/>); the model families implement it by
/// hand (Llama's q/k/v and gate/up, BERT's query/key/value).
/// <c>model.FuseSiblingProjections()</c> links each group so that it runs as one product.
/// </summary>
public interface ISiblingProjections
{
    /// <summary>The groups: each lists two or more child module names, the first being the one <c>forward</c> calls first.</summary>
    IReadOnlyList<IReadOnlyList<string>> SiblingProjections { get; }
}
